package target

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
)

// durableDisk is a memDisk that can also write durably, and counts how
// often it does.
type durableDisk struct {
	*memDisk
	durable     atomic.Int64
	unsupported bool
}

func (d *durableDisk) WriteAtDurable(p []byte, off int64) (int, error) {
	if d.unsupported {
		return 0, ErrDurableUnsupported
	}
	// As long as a sync: the device round trip it stands for (a
	// simulated latency, so the sleep stays).
	time.Sleep(d.syncDelay)
	n, err := d.WriteAt(p, off)
	if err == nil {
		d.durable.Add(1)
	}
	return n, err
}

// TestLoneSyncWriteIsDurable sends sync-mode writes one at a time over a
// batch link: each is written durably in one call, with no separate sync,
// and counted as a synced write. A backend that cannot write durably gets
// the write and a sync instead.
func TestLoneSyncWriteIsDurable(t *testing.T) {
	for _, tc := range []struct {
		name        string
		unsupported bool
	}{{"durable", false}, {"unsupported", true}} {
		t.Run(tc.name, func(t *testing.T) {
			disk := &durableDisk{memDisk: newMemDisk(testSectors), unsupported: tc.unsupported}
			h := newHarness(t, withConfig(func(c *Config) { c.Backend = disk; c.SyncWrites = true }),
				withLink(func(l aoe.Link) aoe.Link { return newBatchPort(l.(*aoetest.Port)) }))
			const writes = 5
			for i := range writes {
				data := pattern(512, byte(i))
				resp := h.client.roundTrip(t, writeReq(h.client, t, uint64(i), data))
				if a := decodeATA(t, resp); a.CmdStatus != aoe.ATAStatusDRDY {
					t.Fatalf("write %d: status %#x", i, a.CmdStatus)
				}
				if got := disk.bytes(i*512, 512); string(got) != string(data) {
					t.Fatalf("write %d: the disk holds other data", i)
				}
			}
			st := h.srv.Stats()
			if tc.unsupported {
				if disk.durable.Load() != 0 || disk.syncs.Load() < writes {
					t.Errorf("%d durable writes, %d syncs; want 0 and at least %d", disk.durable.Load(), disk.syncs.Load(), writes)
				}
			} else if disk.durable.Load() != writes || disk.syncs.Load() != 0 {
				t.Errorf("%d durable writes, %d syncs; want %d and 0", disk.durable.Load(), disk.syncs.Load(), writes)
			}
			if st.SyncedWrites != writes || st.Syncs != writes {
				t.Errorf("stats: %d synced writes in %d syncs; want %d in %d", st.SyncedWrites, st.Syncs, writes, writes)
			}
		})
	}
}

// TestGroupedWritesAreNotDurableOneByOne keeps 16 sync-mode writes in
// flight: once a group forms they share syncs rather than each being
// written durably on its own.
func TestGroupedWritesAreNotDurableOneByOne(t *testing.T) {
	disk := &durableDisk{memDisk: newMemDisk(testSectors)}
	disk.syncDelay = 2 * time.Millisecond // groups form while a sync runs
	h := newHarness(t, withConfig(func(c *Config) { c.Backend = disk; c.SyncWrites = true }),
		withLink(func(l aoe.Link) aoe.Link { return newBatchPort(l.(*aoetest.Port)) }))
	const writers, perWriter = 16, 10
	writeConcurrently(t, h, writers, perWriter)
	total := int64(writers * perWriter)
	if d := disk.durable.Load(); d > total/4 {
		t.Errorf("%d of %d writes written durably one by one; want most to share syncs (%d syncs)", d, total, disk.syncs.Load())
	}
}

// TestFileWriteAtDurable writes through pwritev2 with RWF_DSYNC and reads
// the data back; bounds and read-only files are refused.
func TestFileWriteAtDurable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, make([]byte, 64*1024), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := OpenFile(path, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	data := pattern(1024, 7)
	n, err := b.WriteAtDurable(data, 4096)
	if errors.Is(err, ErrDurableUnsupported) {
		t.Skip("target: this kernel has no pwritev2 RWF_DSYNC")
	}
	if err != nil || n != len(data) {
		t.Fatalf("WriteAtDurable: %d, %v", n, err)
	}
	got := make([]byte, len(data))
	if _, err := b.ReadAt(got, 4096); err != nil || string(got) != string(data) {
		t.Fatalf("read back: %v, same data %v", err, string(got) == string(data))
	}
	if _, err := b.WriteAtDurable(data, 64*1024-512); err == nil || errors.Is(err, ErrDurableUnsupported) {
		t.Errorf("a write past the end: %v, want a range error", err)
	}
	ro, err := OpenFile(path, FileOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ro.Close() })
	if _, err := ro.WriteAtDurable(data, 0); !errors.Is(err, os.ErrPermission) {
		t.Errorf("read-only: %v, want a permission error", err)
	}
}
