package nbd

import "strconv"

// Magic numbers of the handshake and transmission phases.
const (
	magicInit          = 0x4e42444d41474943 // "NBDMAGIC"
	magicOption        = 0x49484156454f5054 // "IHAVEOPT"
	magicOptionReply   = 0x0003e889045565a9
	magicRequest       = 0x25609513
	magicSimpleReply   = 0x67446698
	magicStructuredRep = 0x668e33ef
)

// Handshake flags (server) and client flags.
const (
	handshakeFixedNewstyle = 1 << 0
	handshakeNoZeroes      = 1 << 1

	clientFixedNewstyle = 1 << 0
	clientNoZeroes      = 1 << 1
	clientKnownFlags    = clientFixedNewstyle | clientNoZeroes
)

// Option codes.
const (
	optExportName      = 1
	optAbort           = 2
	optList            = 3
	optStartTLS        = 5
	optInfo            = 6
	optGo              = 7
	optStructuredReply = 8
)

// Option reply types. Errors have bit 31 set.
const (
	repAck    = 1
	repServer = 2
	repInfo   = 3

	repErrUnsup   = 1<<31 + 1
	repErrInvalid = 1<<31 + 3
	repErrUnknown = 1<<31 + 6
	repErrTooBig  = 1<<31 + 9
)

// Information types of NBD_REP_INFO.
const (
	infoExport      = 0
	infoName        = 1
	infoDescription = 2
	infoBlockSize   = 3
)

// Commands.
const (
	cmdRead        = 0
	cmdWrite       = 1
	cmdDisc        = 2
	cmdFlush       = 3
	cmdTrim        = 4
	cmdCache       = 5
	cmdWriteZeroes = 6
)

// Command flags.
const (
	cmdFlagFUA    = 1 << 0
	cmdFlagNoHole = 1 << 1
	cmdFlagDF     = 1 << 2
)

// Structured reply flags and chunk types.
const (
	replyFlagDone = 1 << 0

	replyTypeNone        = 0
	replyTypeOffsetData  = 1
	replyTypeOffsetHole  = 2
	replyTypeError       = 1<<15 + 1
	replyTypeErrorOffset = 1<<15 + 2
)

// Transmission flags, as sent after the handshake and as passed to the Linux
// kernel's nbd driver.
const (
	// FlagHasFlags is always set.
	FlagHasFlags uint16 = 1 << 0
	// FlagReadOnly marks an export that refuses writes.
	FlagReadOnly uint16 = 1 << 1
	// FlagSendFlush offers NBD_CMD_FLUSH.
	FlagSendFlush uint16 = 1 << 2
	// FlagSendFUA offers the FUA (force unit access) command flag.
	FlagSendFUA uint16 = 1 << 3
	// FlagRotational hints that the export behaves like a spinning disk.
	FlagRotational uint16 = 1 << 4
	// FlagSendTrim offers NBD_CMD_TRIM.
	FlagSendTrim uint16 = 1 << 5
	// FlagSendWriteZeroes offers NBD_CMD_WRITE_ZEROES.
	FlagSendWriteZeroes uint16 = 1 << 6
	// FlagSendDF offers the don't-fragment flag on structured reads.
	FlagSendDF uint16 = 1 << 7
	// FlagCanMultiConn says that flushes are visible across connections.
	FlagCanMultiConn uint16 = 1 << 8
	// FlagSendCache offers NBD_CMD_CACHE.
	FlagSendCache uint16 = 1 << 10
)

// Sizes of fixed protocol messages, in bytes.
const (
	requestLen          = 28
	simpleReplyLen      = 16
	structuredReplyLen  = 20
	optionHeaderLen     = 16
	optionReplyLen      = 20
	exportNameZeroesLen = 124
)

// Limits.
const (
	// DefaultMaxPayload is the largest READ or WRITE payload the server
	// accepts unless configured lower; it is also the ceiling for
	// Server.MaxPayload, being the size every client may assume.
	DefaultMaxPayload = 32 << 20
	// maxStringLen is the protocol's limit on names and messages.
	maxStringLen = 4096
	// maxOptionLen caps the data of one option the server will buffer.
	maxOptionLen = 64 << 10
	// maxOptionDrain is the largest oversize option the server discards
	// (replying NBD_REP_ERR_TOO_BIG) before giving up on the connection.
	maxOptionDrain = 16 << 20
	// preferredBlockSize is the preferred block size advertised by default.
	preferredBlockSize = 4096
)

// Errno is an error value of the NBD protocol, sent in replies. A Backend
// may return an Errno (possibly wrapped) to choose the code its client sees.
type Errno uint32

// Error values defined by the protocol.
const (
	// EPERM: operation not permitted (for example a write to a read-only export).
	EPERM Errno = 1
	// EIO: input/output error.
	EIO Errno = 5
	// ENOMEM: cannot allocate memory.
	ENOMEM Errno = 12
	// EINVAL: invalid argument.
	EINVAL Errno = 22
	// ENOSPC: no space left on device (for example a write past the end).
	ENOSPC Errno = 28
	// EOVERFLOW: value too large.
	EOVERFLOW Errno = 75
	// ENOTSUP: operation not supported.
	ENOTSUP Errno = 95
	// ESHUTDOWN: the server is shutting down.
	ESHUTDOWN Errno = 108
)

// Error returns the conventional name of the error value.
func (e Errno) Error() string {
	switch e {
	case EPERM:
		return "nbd: EPERM (operation not permitted)"
	case EIO:
		return "nbd: EIO (input/output error)"
	case ENOMEM:
		return "nbd: ENOMEM (cannot allocate memory)"
	case EINVAL:
		return "nbd: EINVAL (invalid argument)"
	case ENOSPC:
		return "nbd: ENOSPC (no space left on device)"
	case EOVERFLOW:
		return "nbd: EOVERFLOW (value too large)"
	case ENOTSUP:
		return "nbd: ENOTSUP (operation not supported)"
	case ESHUTDOWN:
		return "nbd: ESHUTDOWN (server shutting down)"
	}
	return "nbd: error " + strconv.FormatUint(uint64(e), 10)
}
