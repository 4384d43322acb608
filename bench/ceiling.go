package bench

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SyncCeiling is what the disk allows a sync-before-ack target, measured
// without any network: one thread writing random frame-sized blocks to a
// fresh sparse file and making them durable. A target that acknowledges
// each write only once it is durable cannot beat these rates on the same
// disk, whatever it does with the network.
type SyncCeiling struct {
	// MTU and WriteBytes are the frame size the writes stand for.
	MTU        int `json:"mtu"`
	WriteBytes int `json:"write_bytes"`
	// OSync is the rate of writes to a file opened with O_SYNC, one at a
	// time: what vblade -s does.
	OSync float64 `json:"osync_writes_per_s"`
	// Batches holds the rate of writes made durable Writes at a time,
	// one fdatasync after each batch: group commit at its best, when
	// every write in flight joins the next sync.
	Batches []BatchRate `json:"batches"`
}

// BatchRate is a write rate with Writes writes per fdatasync.
type BatchRate struct {
	Writes int `json:"writes_per_sync"`
	// PerSecond is the median of Samples.
	PerSecond float64 `json:"writes_per_s"`
	// Samples are the rates measured: before the cells, and by Compare
	// again beside each round of the -s write cells with as many writes
	// in flight, since a shared disk's speed drifts over a run (11.5k to
	// 21k writes/s with 16 per sync within an hour on the development VM).
	Samples []float64 `json:"samples,omitempty"`
}

// add records a new sample of the rate and makes PerSecond their median.
func (b *BatchRate) add(rate float64) {
	b.Samples = append(b.Samples, rate)
	b.PerSecond = median(slices.Clone(b.Samples))
}

// batch returns the rate with n writes per sync, or nil if not measured.
func (c *SyncCeiling) batch(n int) *BatchRate {
	for i := range c.Batches {
		if c.Batches[i].Writes == n {
			return &c.Batches[i]
		}
	}
	return nil
}

// Best reports the rate with n writes per sync, or 0 if not measured.
func (c SyncCeiling) Best(n int) float64 {
	for _, b := range c.Batches {
		if b.Writes == n {
			return b.PerSecond
		}
	}
	return 0
}

// MeasureSyncCeiling measures the disk under dir for writes of writeBytes
// at random aligned offsets of a size-byte sparse file, for d per figure:
// O_SYNC writes one at a time, then batches of each of the given sizes,
// each followed by one fdatasync.
func MeasureSyncCeiling(dir string, size int64, mtu, writeBytes int, batches []int, d time.Duration) (SyncCeiling, error) {
	c := SyncCeiling{MTU: mtu, WriteBytes: writeBytes}
	fail := func(err error) (SyncCeiling, error) {
		return c, fmt.Errorf("bench: disk ceiling in %s: %w", dir, err)
	}
	if writeBytes <= 0 || size < int64(writeBytes) {
		return fail(fmt.Errorf("%d-byte writes to a %d-byte file", writeBytes, size))
	}
	var err error
	if c.OSync, err = syncRate(dir, size, writeBytes, 1, true, d); err != nil {
		return fail(err)
	}
	for _, n := range batches {
		rate, err := syncRate(dir, size, writeBytes, n, false, d)
		if err != nil {
			return fail(err)
		}
		c.Batches = append(c.Batches, BatchRate{Writes: n})
		c.Batches[len(c.Batches)-1].add(rate)
	}
	return c, nil
}

// syncRate writes batch random blocks then syncs, over and over for d, on a
// fresh sparse file (with O_SYNC and no fdatasync if osync), and returns
// the writes per second.
func syncRate(dir string, size int64, writeBytes, batch int, osync bool, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "ironbench-ceiling-*.img")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	if osync {
		// Reopened: O_SYNC cannot be asked of CreateTemp.
		g, err := os.OpenFile(f.Name(), os.O_RDWR|os.O_SYNC, 0)
		f.Close()
		if err != nil {
			return 0, err
		}
		f = g
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return 0, err
	}
	data := make([]byte, writeBytes)
	rng := rand.New(rand.NewPCG(uint64(batch), uint64(writeBytes)))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	slots := size / int64(writeBytes)
	writes := 0
	start := time.Now()
	for time.Since(start) < d {
		for range batch {
			if _, err := f.WriteAt(data, rng.Int64N(slots)*int64(writeBytes)); err != nil {
				return 0, err
			}
		}
		if !osync {
			if err := unix.Fdatasync(int(f.Fd())); err != nil {
				return 0, fmt.Errorf("fdatasync: %w", err)
			}
		}
		writes += batch
	}
	return float64(writes) / time.Since(start).Seconds(), nil
}

// summary is the progress line of a ceiling.
func (c SyncCeiling) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "disk      MTU %4d -s ceiling, %d-byte random writes: O_SYNC one at a time %.0f/s", c.MTU, c.WriteBytes, c.OSync)
	for _, r := range c.Batches {
		fmt.Fprintf(&b, "; %d per fdatasync %.0f/s", r.Writes, r.PerSecond)
	}
	return b.String()
}
