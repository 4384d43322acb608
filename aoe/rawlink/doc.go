// Package rawlink moves whole Ethernet frames on a network interface through
// an AF_PACKET socket: the aoe.Link that ironblade and ironaoe run on.
//
// The AoE codec in package aoe knows nothing of sockets; this package holds
// everything that does, split by concern: the socket and its configuration
// (link_linux.go), the classic BPF programs that keep only AoE frames
// (filter_linux.go), the batched, allocation-free read and write paths
// (read_linux.go, write_linux.go) and the userspace 802.1Q tagging of VLAN
// links (vlan_linux.go). On other systems Listen fails.
package rawlink
