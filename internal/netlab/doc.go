// Package netlab builds throwaway Ethernet segments on this machine for
// tests and benchmarks: named network namespaces, veth pairs between them,
// bridges standing in for switches (with 802.1Q trunk ports), random frame
// loss, and raw AoE links opened inside a namespace.
//
// Everything here returns errors rather than failing a test, so that the
// benchmarks can use it; package testenv wraps it for tests, with skips and
// t.Cleanup. It needs Linux, root and iproute2's ip (nft for loss and VLAN
// ports); CheckRoot says what is missing.
package netlab
