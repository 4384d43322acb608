// Package target implements an AoE target: it serves one block device
// (a shelf.slot) from a Backend to initiators on a Link.
//
// Unlike vblade it serves many requests at once, makes FLUSH CACHE durable,
// and in sync mode acknowledges a write only once it is durable, sharing
// one fdatasync among the writes in flight (group commit).
//
// It is also stricter than vblade about what it answers: responses, frames
// for another target or another host, frames from masked initiators and
// writes addressed to the wildcard shelf or slot are dropped and counted,
// and malformed requests get an AoE error instead of being guessed at.
package target

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// A Backend stores the blocks a target serves. FileBackend is the usual
// one; tests wrap it to watch the order of writes and syncs.
//
// ReadAt and WriteAt may be called concurrently for different ranges.
type Backend interface {
	io.ReaderAt
	io.WriterAt
	// Sync makes every write that completed before the call durable
	// (fdatasync for a file).
	Sync() error
	// Size reports the capacity in bytes, a multiple of aoe.SectorSize.
	Size() int64
}

// A NonblockingBackend is a Backend that can tell I/O it completes at once
// (from memory, such as the page cache) from I/O that waits for a device.
// Serve executes the first kind in the loop that received the request, so
// that nothing is handed between goroutines on its way, and hands the
// second kind, like all I/O of other Backends, to its workers.
type NonblockingBackend interface {
	Backend
	// TryReadAt is ReadAt, but when the read would wait for a device it
	// reads nothing (its buffer's content is undefined) and returns
	// ErrWouldBlock.
	TryReadAt(p []byte, off int64) (int, error)
	// TryWriteAt is WriteAt, but when the write would wait for a device
	// it writes nothing and returns ErrWouldBlock.
	TryWriteAt(p []byte, off int64) (int, error)
}

// A DurableWriter is a Backend that can write data and make it durable in
// one call, as WriteAt followed by Sync would for that data alone. In sync
// mode (and for WRITE FUA EXT) a write that finds no other waiting for a
// sync takes this path: a lone writer then pays one device round trip, as
// with vblade -s's O_SYNC, instead of a write and a separate sync.
type DurableWriter interface {
	Backend
	// WriteAtDurable is WriteAt, returning once the data is durable. When
	// it cannot make writes durable this way it writes nothing and
	// returns ErrDurableUnsupported.
	WriteAtDurable(p []byte, off int64) (int, error)
}

// ErrDurableUnsupported is returned by a DurableWriter that cannot make
// a write durable in one call; the write then waits for a Sync.
var ErrDurableUnsupported = errors.New("target: durable writes not supported")

// ErrWouldBlock is returned by a NonblockingBackend for I/O it cannot do
// without waiting for a device.
var ErrWouldBlock = errors.New("target: I/O would wait for the device")

// Config configures a Server. The zero value of each optional field picks
// the documented default.
type Config struct {
	// Shelf and Slot are the AoE address the target answers to. They may
	// not be the broadcast values (aoe.BroadcastMajor, aoe.BroadcastMinor).
	Shelf uint16
	Slot  uint8
	// Backend holds the data. Required.
	Backend Backend
	// BufferCount is the window advertised in Query Config responses and
	// the number of requests the target holds at once. Default 64; at
	// least 2 (the Linux driver cannot use fewer), at most MaxBufferCount.
	BufferCount int
	// ReadOnly refuses ATA writes (vblade -r).
	ReadOnly bool
	// SyncWrites acknowledges a write only after an fdatasync that covers
	// it (ironblade -s). Concurrent writes share one sync.
	SyncWrites bool
	// AllowedMACs, when not empty, is the initial MAC mask list (vblade
	// -m): only these initiators are served, and announcements go to
	// each of them instead of to broadcast. A list loaded from StateDir
	// replaces it.
	AllowedMACs []aoe.MAC
	// StateDir, when set, keeps the config string, MAC mask list and
	// reserve list in a file there, so they survive a restart. The file
	// is named after the shelf and slot (e1.2.json), so exports can share
	// a directory. It is created if missing.
	StateDir string
	// AnnounceInterval, when positive, repeats the start-up announcement
	// that often.
	AnnounceInterval time.Duration
	// Workers is how many requests that wait for a device (reads not
	// in the page cache, direct I/O, and all I/O of a Backend that is not
	// a NonblockingBackend) are executed in parallel. Default:
	// BufferCount.
	Workers int
	// Version is the software version: the IDENTIFY firmware revision (8
	// characters) and, read as major.minor, the Query Config firmware
	// version (major<<8 | minor). Default DefaultVersion.
	Version string
	// Serial is the IDENTIFY serial number (20 characters). Default
	// "shelf.slot:hostname", as vblade.
	Serial string
	// Logger receives the target's logs. Default slog.Default().
	Logger *slog.Logger
}

// Defaults and limits of Config fields.
const (
	// DefaultBufferCount is the BufferCount used when Config leaves it 0.
	DefaultBufferCount = 64
	// MaxBufferCount bounds BufferCount: each buffer holds a jumbo frame.
	MaxBufferCount = 4096
	// DefaultVersion is the Version used when Config leaves it empty.
	DefaultVersion = "0.1"
	// MaxMACMask is the longest MAC mask list the target keeps: 128
	// directives make a 1052-byte response, which fits a 1500-byte MTU.
	MaxMACMask = 128
)

// Stats are a target's counters since it was created.
type Stats struct {
	FramesIn, FramesOut     uint64
	BytesRead, BytesWritten uint64
	// Syncs counts Backend.Sync calls and lone writes made durable in one
	// call (DurableWriter); SyncedWrites counts the writes they covered
	// (their ratio shows the group commit at work).
	Syncs, SyncedWrites uint64
	// Dropped counts frames ignored, by reason: "short" (shorter than its
	// headers), "not_aoe", "response" (R flag set), "other_host" (unicast
	// to another MAC), "other_target" (another shelf.slot), "bad_source"
	// (group or zero source MAC), "mac_mask" (sender not in the MAC mask
	// list), "wildcard_write" (an ATA write to the broadcast shelf or
	// slot), "config_mismatch" (a Query Config test that did not match:
	// AoE says not to answer it), "shutdown" (read while stopping).
	// Only reasons seen are present.
	Dropped map[string]uint64
	// Errors counts error responses, by kind: AoE errors
	// ("aoe_unrecognized_command", "aoe_bad_argument",
	// "aoe_config_string_present", "aoe_unsupported_version",
	// "aoe_target_reserved"), ATA errors ("ata_abort" for an unsupported
	// command, "ata_read_only", "ata_idnf", "ata_read_error",
	// "ata_write_error", "ata_sync_error") and MAC mask errors
	// ("mask_bad_directive", "mask_list_full"). Only kinds seen are
	// present.
	Errors map[string]uint64
	// SendErrors counts responses the link failed to send.
	SendErrors uint64
}
