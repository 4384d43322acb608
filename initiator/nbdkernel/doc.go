// Package nbdkernel attaches NBD exports served by this process to the Linux
// kernel's nbd driver, so that they appear as block devices /dev/nbdN.
//
// The kernel only speaks the NBD transmission phase. For each connection
// the package creates an AF_UNIX socket pair, hands one end to the driver
// through its generic netlink family ("nbd", NBD_CMD_CONNECT) and serves the
// other end with a caller-supplied function, so no handshake and no network
// hop are involved. The attached Device then keeps its connections alive:
// when the kernel declares one dead (the NBD_CMD_LINK_DEAD multicast event,
// sent after a request timeout or a socket error) or a Serve call fails, it
// hands the kernel a fresh socket with NBD_CMD_RECONFIGURE, and it stops when
// the device is disconnected (NBD_CMD_DISCONNECT, from Detach or any other
// process).
//
// The kernel requires CAP_SYS_ADMIN for everything but status queries, and
// the nbd module (`modprobe nbd`); Available reports whether it is there.
package nbdkernel
