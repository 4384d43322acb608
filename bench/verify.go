package bench

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// VerifyOptions says where and how Verify writes.
type VerifyOptions struct {
	// Offset and Size are the byte range written and read back; both
	// must be multiples of 512. Size 0 means 8 MiB.
	Offset, Size int64
	// QueueDepth is how many requests are kept in flight; 0 means 16.
	QueueDepth int
}

// withDefaults returns o with its zero fields set to the defaults.
func (o VerifyOptions) withDefaults() VerifyOptions {
	o.Size = cmp.Or(o.Size, 8<<20)
	o.QueueDepth = cmp.Or(o.QueueDepth, 16)
	return o
}

// VerifyResult reports a Verify run.
type VerifyResult struct {
	Bytes int64
	// WriteTime and ReadTime are how long the write and the read back
	// took.
	WriteTime, ReadTime time.Duration
	// Retransmits counts requests sent again.
	Retransmits uint64
}

// WriteMBps reports the write's throughput, in 10^6 bytes per second.
func (r *VerifyResult) WriteMBps() float64 { return megabytesPerSecond(r.Bytes, r.WriteTime) }

// ReadMBps reports the read back's throughput, in 10^6 bytes per second.
func (r *VerifyResult) ReadMBps() float64 { return megabytesPerSecond(r.Bytes, r.ReadTime) }

// ErrMismatch is wrapped by Verify's error when the data read back is not
// the data written.
var ErrMismatch = errors.New("data read back differs from data written")

// Verify writes random data to a region of dev, reads it back and compares.
func Verify(ctx context.Context, link Link, dev Device, opts VerifyOptions) (*VerifyResult, error) {
	opts = opts.withDefaults()
	switch {
	case opts.Offset < 0 || opts.Size < 0 || opts.Offset%aoe.SectorSize != 0 || opts.Size%aoe.SectorSize != 0:
		return nil, fmt.Errorf("bench: verify: offset %d, size %d: want whole sectors", opts.Offset, opts.Size)
	case dev.Sectors > 0 && uint64(opts.Offset+opts.Size) > dev.Sectors*aoe.SectorSize:
		return nil, fmt.Errorf("bench: verify: %d bytes at %d do not fit in %v's %d bytes", opts.Size, opts.Offset, dev, dev.Sectors*aoe.SectorSize)
	}
	data := make([]byte, opts.Size)
	rand.Read(data)
	res := &VerifyResult{Bytes: opts.Size}

	start := time.Now()
	n, err := transfer(ctx, link, dev, data, opts.Offset, opts.QueueDepth, true)
	res.WriteTime, res.Retransmits = time.Since(start), n
	if err != nil {
		return res, fmt.Errorf("bench: verify %v: write: %w", dev, err)
	}
	back := make([]byte, opts.Size)
	start = time.Now()
	n, err = transfer(ctx, link, dev, back, opts.Offset, opts.QueueDepth, false)
	res.ReadTime, res.Retransmits = time.Since(start), res.Retransmits+n
	if err != nil {
		return res, fmt.Errorf("bench: verify %v: read back: %w", dev, err)
	}
	if !bytes.Equal(data, back) {
		i := 0
		for data[i] == back[i] {
			i++
		}
		return res, fmt.Errorf("bench: verify: first difference at byte %d (sector %d): %w",
			opts.Offset+int64(i), (opts.Offset+int64(i))/aoe.SectorSize, ErrMismatch)
	}
	return res, nil
}

// transfer writes p to, or reads p from, dev at byte offset off, frame by
// frame, with qd requests in flight. It returns the retransmission count.
func transfer(ctx context.Context, link Link, dev Device, p []byte, off int64, qd int, write bool) (uint64, error) {
	e, err := newEngine(link, dev, qd, write)
	if err != nil {
		return 0, err
	}
	next := 0
	lba := uint64(off) / aoe.SectorSize
	e.fill = func(s *slot, _ time.Time) bool {
		if next >= len(p) {
			return false
		}
		n := min(len(p)-next, dev.SectorsPerFrame*aoe.SectorSize)
		s.pos, s.sectors = next, n/aoe.SectorSize
		s.lba = lba + uint64(next/aoe.SectorSize)
		if write {
			copy(s.frame[aoe.FrameHeaderLen+aoe.ATAHeaderLen:], p[next:next+n])
		}
		next += n
		return true
	}
	e.complete = func(s *slot, a *aoe.ATA, _ time.Time) error {
		if !write {
			copy(p[s.pos:s.pos+s.sectors*aoe.SectorSize], a.Data)
		}
		return nil
	}
	err = e.run(ctx)
	return e.retransmits, err
}
