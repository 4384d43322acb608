// Package nbd implements the server side of the Network Block Device
// protocol, as the NBD project's doc/proto.md specifies it: the fixed
// newstyle handshake and the transmission phase, with simple and structured
// replies.
//
// A Server serves the exports named by an Exports; each export is a
// Backend, a range of bytes with optional capabilities (ZeroWriter,
// Trimmer, ReadOnlyBackend, MultiConnBackend, BlockSizer) that the server
// advertises only when the backend has them. Serve accepts connections from
// a listener and runs the handshake on each; ServeTransmission skips the
// handshake, for a socket whose handshake was agreed out of band, such as one
// handed to the Linux kernel's nbd driver.
//
// Within a connection, one goroutine reads requests and a bounded set of
// workers (Server.MaxInFlight) executes them concurrently against the
// backend; replies are serialized onto the connection in completion order.
// Payload buffers come from size-classed pools, so the steady state does not
// allocate per request.
//
// Client is a small client for the same protocol, used by this package's
// tests and by end-to-end tests elsewhere.
//
// Not implemented: TLS (NBD_OPT_STARTTLS is answered NBD_REP_ERR_UNSUP),
// metadata contexts and NBD_CMD_BLOCK_STATUS, extended headers, and the
// oldstyle handshake.
package nbd
