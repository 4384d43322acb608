package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// StreamOptions says what Stream moves.
type StreamOptions struct {
	Op Op
	// QueueDepth is how many requests are kept in flight.
	QueueDepth int
	// Bytes is how much is moved from the start of the device, rounded
	// down to whole sectors; 0 means the whole device.
	Bytes int64
	// Flush, for writes, sends FLUSH CACHE once every write is answered
	// and counts the time until it is answered: what a copy that ends with
	// a flush (nbdcopy --flush) waits for.
	Flush bool
	// MinTimeout is the least time a request waits for its answer before
	// it is sent again; 0 means DefaultMinTimeout.
	MinTimeout time.Duration
}

// StreamResult is what a Stream measured.
type StreamResult struct {
	Op         Op
	QueueDepth int
	// Bytes is the data moved.
	Bytes int64
	// Elapsed runs from the first request to the last answer, including
	// FlushTime.
	Elapsed time.Duration
	// FlushTime is how long the final FLUSH CACHE took, if one was sent.
	FlushTime time.Duration
	// Retransmits counts requests sent again because their answer was
	// late.
	Retransmits uint64
}

// MBps reports the data moved, in megabytes (10^6 bytes) per second.
func (r *StreamResult) MBps() float64 { return megabytesPerSecond(r.Bytes, r.Elapsed) }

// flushTimeout bounds the wait for a FLUSH CACHE answer: the target may
// have a whole export's worth of dirty pages to write back first.
const flushTimeout = 2 * time.Minute

// Stream writes or reads the start of dev in address order, each request
// as many sectors as a frame holds, QueueDepth requests in flight: the
// largest, most sequential transfer the wire allows, as a copy program
// would ask for. Written data is random, so that no layer can shortcut
// zeros; read data is dropped.
func Stream(ctx context.Context, link Link, dev Device, o StreamOptions) (*StreamResult, error) {
	total := uint64(dev.Sectors)
	if o.Bytes < 0 {
		return nil, fmt.Errorf("bench: stream: %d bytes", o.Bytes)
	}
	if o.Bytes > 0 {
		total = min(total, uint64(o.Bytes)/aoe.SectorSize)
	}
	if total == 0 {
		return nil, fmt.Errorf("bench: stream: %v: nothing to move (%d sectors, %d bytes asked)", dev, dev.Sectors, o.Bytes)
	}
	write := o.Op == Write
	e, err := newEngine(link, dev, o.QueueDepth, write)
	if err != nil {
		return nil, fmt.Errorf("bench: stream: %w", err)
	}
	e.rtt.floor = o.MinTimeout
	if write {
		rng := rand.NewChaCha8([32]byte{4, 5, 6})
		for i := range e.slots {
			_, _ = rng.Read(e.slots[i].frame[aoe.FrameHeaderLen+aoe.ATAHeaderLen:])
		}
	}
	spf := uint64(dev.SectorsPerFrame)
	var next uint64
	e.fill = func(s *slot, _ time.Time) bool {
		if next >= total {
			return false
		}
		s.lba, s.sectors = next, int(min(spf, total-next))
		next += uint64(s.sectors)
		return true
	}
	e.complete = func(*slot, *aoe.ATA, time.Time) error { return nil }

	res := &StreamResult{Op: o.Op, QueueDepth: o.QueueDepth, Bytes: int64(total) * aoe.SectorSize}
	start := time.Now()
	err = e.run(ctx)
	res.Retransmits = e.retransmits
	if err == nil && write && o.Flush {
		flushStart := time.Now()
		err = flushCache(ctx, link, dev)
		res.FlushTime = time.Since(flushStart)
	}
	res.Elapsed = time.Since(start)
	if err != nil {
		return res, fmt.Errorf("bench: stream %v %v at queue depth %d: %w", dev, o.Op, o.QueueDepth, err)
	}
	return res, nil
}

// flushCache sends FLUSH CACHE to dev and waits for the answer, sending it
// again every second meanwhile (a flush may be repeated harmlessly, and
// the first one or its answer may be lost).
func flushCache(ctx context.Context, link Link, dev Device) error {
	arg, err := (&aoe.ATA{CmdStatus: aoe.ATAFlushCache}).MarshalBinary()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	tag := newTag()
	f := aoe.Frame{Dst: dev.MAC, Src: link.HardwareAddr(), Header: aoe.Header{
		Version: aoe.Version, Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandATA, Tag: tag}, Arg: arg}
	b, err := f.MarshalBinary()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	deadline := time.Now().Add(flushTimeout)
	var answered bool
	var failure error
	for !answered && time.Now().Before(deadline) {
		if err := link.WriteFrame(b); err != nil {
			return fmt.Errorf("flush: %w", err)
		}
		err := readUntil(ctx, link, time.Now().Add(time.Second), func(f *aoe.Frame) bool {
			if f.Tag != tag || f.Src != dev.MAC || f.Command != aoe.CommandATA {
				return false
			}
			var a aoe.ATA
			switch {
			case f.Flags&aoe.FlagError != 0:
				failure = f.Error
			case a.UnmarshalBinary(f.Arg) != nil:
				failure = aoe.ErrShort
			case a.CmdStatus&(aoe.ATAStatusError|aoe.ATAStatusDF) != 0:
				failure = fmt.Errorf("ATA status %#02x, error %#02x", a.CmdStatus, a.FeatureError)
			}
			answered = true
			return true
		})
		if err != nil {
			return fmt.Errorf("flush: %w", err)
		}
	}
	switch {
	case failure != nil:
		return fmt.Errorf("flush: %w", failure)
	case !answered:
		return fmt.Errorf("flush: %w within %v", aoe.ErrNoResponse, flushTimeout)
	}
	return nil
}
