// Package target implements an AoE target: it serves one block device
// (a shelf.slot) from a Backend to initiators on a Link.
//
// Unlike vblade it serves many requests at once, makes FLUSH CACHE durable,
// and in sync mode acknowledges a write only once it is durable, sharing
// one fdatasync among the writes in flight (group commit).
package target

import (
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

// Config configures a Server. The zero value of each optional field picks
// the documented default.
type Config struct {
	// Shelf and Slot are the AoE address the target answers to.
	Shelf uint16
	Slot  uint8
	// Backend holds the data. Required.
	Backend Backend
	// BufferCount is the window advertised in Query Config responses and
	// the number of requests the target holds at once. Default 64; at
	// least 2 (the Linux driver cannot use fewer).
	BufferCount int
	// ReadOnly refuses ATA writes (vblade -r).
	ReadOnly bool
	// SyncWrites acknowledges a write only after an fdatasync that covers
	// it (ironblade -s). Concurrent writes share one sync.
	SyncWrites bool
	// AllowedMACs, when not empty, is the initial MAC mask list (vblade
	// -m): only these initiators are served, and announcements go to
	// each of them instead of to broadcast.
	AllowedMACs []aoe.MAC
	// StateDir, when set, keeps the config string, MAC mask list and
	// reserve list in a file there, so they survive a restart.
	StateDir string
	// AnnounceInterval, when positive, repeats the start-up announcement
	// that often.
	AnnounceInterval time.Duration
	// Workers is how many requests are executed in parallel. Default:
	// BufferCount.
	Workers int
	// Logger receives the target's logs. Default slog.Default().
	Logger *slog.Logger
}

// Stats are a target's counters since it started.
type Stats struct {
	FramesIn, FramesOut     uint64
	BytesRead, BytesWritten uint64
	// Syncs counts fdatasync calls; SyncedWrites counts the writes they
	// covered (their ratio shows the group commit at work).
	Syncs, SyncedWrites uint64
	// Dropped counts frames ignored, by reason.
	Dropped map[string]uint64
	// Errors counts error responses, by kind (AoE error or ATA status).
	Errors map[string]uint64
	// SendErrors counts responses the link failed to send.
	SendErrors uint64
}
