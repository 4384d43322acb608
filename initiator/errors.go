package initiator

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/ironblade/ironblade/aoe"
)

// Errors returned by Device methods. Each wraps the syscall.Errno an NBD
// server should report for it (EINVAL, EIO or ESHUTDOWN), so a server can
// map errors with errors.As without knowing this package.
var (
	// ErrUnaligned is returned for I/O whose offset or length is not a
	// multiple of aoe.SectorSize: AoE moves whole sectors, and this
	// package does not read-modify-write partial ones.
	ErrUnaligned = &errnoError{"initiator: I/O not aligned to 512-byte sectors", syscall.EINVAL}
	// ErrOutOfRange is returned for I/O that reaches past the end of the
	// device.
	ErrOutOfRange = &errnoError{"initiator: I/O beyond the end of the device", syscall.EINVAL}
	// ErrTimeout is returned when no target answered a frame within
	// Config.DeadTimeout; the device is then down until a target answers
	// again, and I/O fails at once meanwhile.
	ErrTimeout = &errnoError{"initiator: no target answered (device down)", syscall.EIO}
	// ErrClosed is returned for I/O on an Initiator whose Run has
	// returned.
	ErrClosed = &errnoError{"initiator: closed", syscall.ESHUTDOWN}
	// ErrNotReady is returned for I/O on a device whose IDENTIFY has not
	// completed yet (see Initiator.Device, which waits for it).
	ErrNotReady = &errnoError{"initiator: device not identified yet", syscall.EIO}
)

// errnoError is a sentinel error that also matches an errno.
type errnoError struct {
	msg   string
	errno syscall.Errno
}

func (e *errnoError) Error() string { return e.msg }

// Unwrap returns the errno a server should report, for errors.Is and
// errors.As.
func (e *errnoError) Unwrap() error { return e.errno }

// IOError describes a frame that a target answered with an error, or whose
// answer could not be used. It matches syscall.EIO with errors.Is, and
// unwraps to the aoe.Error of an AoE-level refusal or to Err.
type IOError struct {
	// Device is the device's name ("e1.0").
	Device string
	// Target is the MAC of the target that answered.
	Target aoe.MAC
	// Op is what failed: "read", "write", "flush" or "identify".
	Op string
	// LBA and Sectors locate the frame that failed.
	LBA     uint64
	Sectors int
	// AoE is the error code of a response with the AoE error flag set.
	AoE aoe.Error
	// Status and ATAError are the ATA status and error registers of a
	// command the device failed (Status has aoe.ATAStatusError or
	// aoe.ATAStatusDF set).
	Status, ATAError uint8
	// Err is any other cause, such as a response too short for its data.
	Err error
}

// Error says which device, operation, sectors and target failed, and how.
func (e *IOError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "initiator: %s: %s of %d sectors at LBA %d via %s: ", e.Device, e.Op, e.Sectors, e.LBA, e.Target)
	switch {
	case e.AoE != 0:
		fmt.Fprintf(&b, "target refused the command: %v", e.AoE)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		fmt.Fprintf(&b, "ATA status %#02x [%s], error %#02x [%s]", e.Status, describeStatus(e.Status), e.ATAError, describeATAError(e.ATAError))
	}
	return b.String()
}

// Unwrap returns the AoE error code or the underlying cause.
func (e *IOError) Unwrap() error {
	if e.AoE != 0 {
		return e.AoE
	}
	return e.Err
}

// Is makes every IOError match syscall.EIO.
func (e *IOError) Is(target error) bool { return target == syscall.EIO }

// errShortResponse is an IOError's Err for a read response that carries
// less data than it was asked for.
var errShortResponse = errors.New("response shorter than the data asked for")

// errFrameTooLarge is an IOError's Err when the link refuses a frame, as
// happens when an interface's MTU drops under I/O.
var errFrameTooLarge = errors.New("frame larger than the link's MTU (did the MTU drop?)")

// describeStatus names the bits of an ATA status register.
func describeStatus(s uint8) string {
	return describeBits(s, []bitName{
		{aoe.ATAStatusBSY, "BSY"}, {aoe.ATAStatusDRDY, "DRDY"}, {aoe.ATAStatusDF, "DF device fault"},
		{0x10, "DSC"}, {0x08, "DRQ"}, {aoe.ATAStatusError, "ERR"},
	})
}

// describeATAError names the bits of an ATA error register, saying what
// the usual ones mean.
func describeATAError(e uint8) string {
	return describeBits(e, []bitName{
		{0x80, "ICRC interface CRC error"}, {aoe.ATAErrorUNC, "UNC uncorrectable data"}, {0x20, "MC"},
		{aoe.ATAErrorIDNF, "IDNF address not found"}, {0x08, "MCR"}, {aoe.ATAErrorABRT, "ABRT command aborted"},
		{0x02, "NM no media"}, {0x01, "AMNF"},
	})
}

type bitName struct {
	bit  uint8
	name string
}

func describeBits(v uint8, names []bitName) string {
	var parts []string
	for _, n := range names {
		if v&n.bit != 0 {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
