package target

import (
	"bytes"
	"errors"
	"os"
	"testing"
)

// TestMappedViewResidency checks that the view copies only pages stamped in
// this residency epoch or the last, and that forgetting takes a stamp back.
func TestMappedViewResidency(t *testing.T) {
	path, content := tempFile(t, 64<<10)
	b := openFile(t, path, FileOptions{})
	v := b.view
	if v == nil {
		t.Fatal("a regular file open without O_DIRECT has no mapping")
	}
	p := make([]byte, 1024)
	const abs = 5000 // within page 1, not on its start
	if v.tryCopyOut(p, abs) {
		t.Fatal("copied from a page never stamped resident")
	}
	v.markResident(abs, len(p))
	if !v.tryCopyOut(p, abs) || !bytes.Equal(p, content[abs:abs+1024]) {
		t.Fatal("no copy, or the wrong data, from a stamped page")
	}
	// A range over two pages needs both.
	if v.tryCopyOut(p, 8192-512) {
		t.Fatal("copied a range whose second page was never stamped")
	}
	epoch := v.epoch()
	// A copy renews a stale stamp, so a page in use stays stamped.
	for _, tc := range []struct {
		name         string
		stamp, after uint32
		ok           bool
	}{
		{"this epoch", v.stamp(1, epoch), v.stamp(1, epoch), true},
		{"last epoch", v.stamp(1, epoch-1), v.stamp(1, epoch), true},
		{"two epochs ago", v.stamp(1, epoch-2), v.stamp(1, epoch-2), false},
		{"another page in the slot", v.stamp(1+v.mask+1, epoch), v.stamp(1+v.mask+1, epoch), false},
		{"empty slot", 0, 0, false},
	} {
		v.pages[1&v.mask].Store(tc.stamp)
		got := v.tryCopyOut(p, abs)
		if v.epoch() != epoch {
			t.Skip("the residency epoch turned during the test; the stamps compared are of the one before")
		}
		if got != tc.ok {
			t.Errorf("%s: copied %v, want %v", tc.name, got, tc.ok)
		}
		if got := v.pages[1&v.mask].Load(); got != tc.after {
			t.Errorf("%s: stamp %#x after the copy, want %#x", tc.name, got, tc.after)
		}
	}
	v.markResident(abs, len(p))
	v.forget(abs, len(p))
	if v.tryCopyOut(p, abs) {
		t.Error("copied from a page forgotten")
	}
	for _, tc := range []struct {
		abs int64
		n   int
	}{{-512, 512}, {64 << 10, 512}, {64<<10 - 512, 1024}, {0, 0}} {
		v.markResident(max(tc.abs, 0), max(tc.n, 1))
		if v.tryCopyOut(make([]byte, tc.n), tc.abs) {
			t.Errorf("copied %d bytes at %d, outside the mapping or empty", tc.n, tc.abs)
		}
	}
}

// TestMappedViewTags checks windows with more pages than the residency
// table has slots, starting anywhere in the file: two pages that share a
// slot never pass for each other.
func TestMappedViewTags(t *testing.T) {
	const page = 1 << mappedPageShift
	for _, tc := range []struct {
		name     string
		from, to int64
	}{
		{"one page past the table, from page 3", 3 * page, 3*page + (maxResidencyPages+2)*page},
		{"5 GiB from 1 TiB", 1 << 40, 1<<40 + 5<<30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "tags-*.img")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if err := f.Truncate(tc.to); err != nil {
				t.Skipf("a sparse file of %d bytes: %v", tc.to, err)
			}
			v := newMappedView(int(f.Fd()), tc.from, tc.to, false)
			if v == nil {
				t.Skip("the window could not be mapped here")
			}
			t.Cleanup(func() { v.close() })
			if len(v.pages) != maxResidencyPages {
				t.Fatalf("%d slots, want the most, %d", len(v.pages), maxResidencyPages)
			}
			first := tc.from + page
			twin := first + int64(len(v.pages))*page // same slot, another tag
			v.markResident(first, 512)
			if ok, _ := v.resident(first, 512); !ok {
				t.Error("a page just stamped is not resident")
			}
			if ok, _ := v.resident(twin, 512); ok {
				t.Error("a page sharing its slot passes for the one stamped")
			}
			if s := v.pages[uint64(first)>>mappedPageShift&v.mask].Load(); s == 0 {
				t.Error("a stamp is 0, which means an empty slot")
			}
		})
	}
}

// TestFileBackendMappedIO checks that reads and writes through the mapping
// see and leave what pread and pwrite do, in the export's window, and
// allocate nothing.
func TestFileBackendMappedIO(t *testing.T) {
	path, content := tempFile(t, 64<<10)
	b := openFile(t, path, FileOptions{Offset: 4096})
	p := make([]byte, 1024)
	// The first read takes preadv2 and stamps the page; the second copies.
	for range 2 {
		if n, err := b.TryReadAt(p, 512); err != nil || n != len(p) || !bytes.Equal(p, content[4096+512:][:1024]) {
			t.Fatalf("TryReadAt: %d, %v", n, err)
		}
	}
	if ok, _ := b.view.resident(4096+512, 1024); !ok {
		t.Fatal("a read by preadv2 left no residency stamp")
	}
	data := pattern(1024, 7)
	if _, err := b.TryWriteAt(data, 512); err != nil { // through the mapping
		t.Fatal(err)
	}
	if _, err := b.TryReadAt(p, 512); err != nil || !bytes.Equal(p, data) {
		t.Fatalf("TryReadAt after a mapped write: %v (data right: %v)", err, bytes.Equal(p, data))
	}
	// Another descriptor (pread) sees the mapped write; Sync makes it durable
	// as any other (fdatasync writes back pages dirtied through a mapping).
	if err := b.Sync(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[4096+512:][:1024], data) || !bytes.Equal(got[:4096+512], content[:4096+512]) {
		t.Fatal("the file does not hold the mapped write where it belongs")
	}
	if allocs := testing.AllocsPerRun(100, func() {
		_, _ = b.TryReadAt(p, 512)
		_, _ = b.TryWriteAt(data, 512)
	}); allocs != 0 && !raceEnabled {
		t.Errorf("mapped TryReadAt and TryWriteAt: %v allocations", allocs)
	}
	for _, opt := range []FileOptions{{ReadOnly: true}, {SyncWrites: true}} {
		if b := openFile(t, path, opt); b.mapWrites || b.view == nil || b.view.writable {
			t.Errorf("%+v: writes through the mapping (%v) or no read-only mapping", opt, b.mapWrites)
		}
	}
	// A window that does not start on a page: the mapping starts on the
	// page before it.
	odd := openFile(t, path, FileOptions{Offset: 4096 + 1536})
	for range 2 { // by pwrite, stamping, then through the mapping
		if _, err := odd.TryWriteAt(data, 1024); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := odd.TryReadAt(p, 1024); err != nil || !bytes.Equal(p, data) {
		t.Fatalf("TryReadAt in a window off a page boundary: %v (data right: %v)", err, bytes.Equal(p, data))
	}
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got[4096+1536+1024:][:1024], data) {
		t.Fatalf("the write in a window off a page boundary is not where it belongs (%v)", err)
	}
	ro := openFile(t, path, FileOptions{ReadOnly: true})
	ro.view.markResident(0, 1024)
	if _, err := ro.TryWriteAt(data, 0); err == nil || errors.Is(err, ErrWouldBlock) {
		t.Errorf("TryWriteAt on a read-only backend with a stamped page: %v, want a permission error", err)
	}
}

// TestFileBackendMappedFault cuts the file short under its mapping: the
// copies fault (SIGBUS), which must become a fallback to the system call,
// not a crash, and forget the pages.
func TestFileBackendMappedFault(t *testing.T) {
	path, _ := tempFile(t, 64<<10)
	b := openFile(t, path, FileOptions{})
	p := make([]byte, 1024)
	if _, err := b.TryReadAt(p, 32<<10); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	b.view.markResident(32<<10, 1024)
	if b.view.tryCopyOut(p, 32<<10) {
		t.Fatal("copied from a page beyond the end of the file")
	}
	if ok, _ := b.view.resident(32<<10, 1024); ok {
		t.Error("a faulting page is still stamped resident")
	}
	if _, err := b.TryReadAt(p, 32<<10); !errors.Is(err, ErrWouldBlock) {
		t.Errorf("TryReadAt beyond the file's end: %v, want ErrWouldBlock (for ReadAt to report)", err)
	}
	b.view.markResident(40<<10, 1024)
	if b.view.tryCopyIn(p, 40<<10) {
		t.Fatal("copied into a page beyond the end of the file")
	}
	// The write falls back to pwrite, which extends the file.
	if _, err := b.TryWriteAt(p, 40<<10); err != nil {
		t.Fatalf("TryWriteAt after the fault: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != 41<<10 {
		t.Fatalf("after the fallback write: %v, %v", fi, err)
	}
}

// TestReadStreams checks which reads from the device make readAhead ask
// the kernel for more: only streams that continue for readStreamMinReads
// reads, two interleaved ones as well as one, with a window that grows to
// readAheadWindow and is not asked for again while most of it is ahead.
func TestReadStreams(t *testing.T) {
	const req = 128 << 10
	type read struct {
		abs        int64
		wantWindow int64
	}
	for _, tc := range []struct {
		name  string
		reads []read
	}{
		{"one stream", []read{
			{0, 0}, {req, 0}, {2 * req, readAheadFirst}, {3 * req, 2 * readAheadFirst}, {4 * req, 4 * readAheadFirst},
		}},
		{"two interleaved streams", []read{
			{0, 0}, {1 << 30, 0}, {req, 0}, {1<<30 + req, 0}, {2 * req, readAheadFirst}, {1<<30 + 2*req, readAheadFirst},
		}},
		{"random reads", []read{
			{5 << 20, 0}, {90 << 20, 0}, {33 << 20, 0}, {71 << 20, 0}, {12 << 20, 0}, {50 << 20, 0},
		}},
		{"out of order within the slack", []read{
			{0, 0}, {2 * req, 0}, {req, readAheadFirst}, {3 * req, 2 * readAheadFirst},
		}},
		{"one block read again and again", []read{
			{0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0}, {0, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var rs readStreams
			for i, r := range tc.reads {
				if got := rs.advise(r.abs, r.abs+req); got != r.wantWindow {
					t.Errorf("read %d at %d: read ahead %d, want %d", i, r.abs, got, r.wantWindow)
				}
			}
		})
	}
	var rs readStreams
	var window int64
	asks := 0
	for i := range int64(200) { // 25 MiB
		if w := rs.advise(i*req, (i+1)*req); w > 0 {
			window = max(window, w)
			asks++
		}
	}
	if window != readAheadWindow || asks > 20 {
		t.Errorf("a long stream's window grew to %d, want %d; asked %d times for 200 reads, want one every few MiB",
			window, readAheadWindow, asks)
	}
}
