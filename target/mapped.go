package target

import (
	"runtime/debug"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// A mappedView reads and writes a file through a shared memory mapping, so
// that I/O the page cache can take costs a copy in user space instead of a
// system call (preadv2 was a quarter of the target's CPU per request in
// the pinned profile, pwrite over a third; docs/performance.md). A page
// written through the mapping is dirty in the page cache as one written
// with pwrite is: fdatasync writes it back, so FLUSH CACHE and -s keep
// their meaning.
//
// A copy to or from the mapping may fault: a page not in memory is read from the
// device while the copying thread waits, and an I/O error or a file cut
// short raises SIGBUS. The receive loop must never wait for the device, so
// the view copies only pages it has seen in the page cache lately: a
// residency table, direct-mapped by page, stamps a page when a read
// without waiting (preadv2 RWF_NOWAIT), a read by a worker or a write has
// just found or put it there, and a copy through the mapping renews the
// stamp of a page stamped in the window before. A stamp lasts one to two
// residencyWindows after the page's last use: the kernel seldom reclaims a
// page used that recently, and if it does, the copy waits for one device
// read; the data are right either way. Faults are turned into
// panics (debug.SetPanicOnFault) and recovered, so SIGBUS makes the read
// fall back to the system call, which reports the error.
type mappedView struct {
	data     []byte // the file from base on
	base     int64  // the file offset data starts at, page-aligned
	writable bool
	pages    []atomic.Uint32 // residency stamps, len a power of two
	mask     uint64
	shift    uint      // log2 of len(pages)
	start    time.Time // the origin of the residency epochs: a monotonic clock
}

const (
	// residencyWindow is how long a residency stamp lasts at least (at
	// most twice that).
	residencyWindow = 1 << 31 * time.Nanosecond // about 2.1 s
	// maxResidencyPages bounds the table: 2 MiB, the stamps of a 2 GiB hot
	// set. Pages beyond it collide, and a page whose slot another holds
	// is read with the system call.
	maxResidencyPages = 1 << 19
	mappedPageShift   = 12
)

// newMappedView maps bytes [from, to) of fd (from the page holding from),
// for writing too if writable (fd must then be open for reading and
// writing). It returns nil if the file cannot be mapped (the caller keeps
// using system calls).
func newMappedView(fd int, from, to int64, writable bool) *mappedView {
	base := from &^ (1<<mappedPageShift - 1)
	size := to - base
	if from < 0 || size <= 0 || int64(int(size)) != size {
		return nil
	}
	prot := unix.PROT_READ
	if writable {
		prot |= unix.PROT_WRITE
	}
	data, err := unix.Mmap(fd, base, int(size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil
	}
	// Random access: a fault must not read ahead around the page.
	_ = unix.Madvise(data, unix.MADV_RANDOM)
	// One slot per page of the window (a contiguous window of at most
	// len(pages) pages never puts two pages in one slot): 4 bytes a page,
	// so that a random workload's lookups stay in the CPU's caches.
	pages := (uint64(size) + 1<<mappedPageShift - 1) >> mappedPageShift
	n, shift := uint64(1), uint(0)
	for n < pages && n < maxResidencyPages {
		n, shift = n<<1, shift+1
	}
	return &mappedView{data: data, base: base, writable: writable,
		pages: make([]atomic.Uint32, n), mask: n - 1, shift: shift, start: time.Now()}
}

// close unmaps the view; closing again does nothing.
func (v *mappedView) close() error {
	if v == nil || v.data == nil {
		return nil
	}
	data := v.data
	v.data = nil
	return unix.Munmap(data)
}

// epoch is the current stamp period.
func (v *mappedView) epoch() uint64 {
	return uint64(time.Since(v.start) / residencyWindow)
}

// stamp is the value of a slot holding page in epoch: in the high half,
// a set bit (so that no stamp is 0, an empty slot) and the low 15 bits of
// the page's number above the slot index (which tell apart the pages that
// share a slot in a window of over 2 GiB, up to 64 TiB); in the low half,
// the epoch's low 16 bits. Those come round again after 39 hours: a slot
// untouched that long may pass for fresh, and then one copy waits for a
// device read, as when the kernel reclaims a stamped page.
func (v *mappedView) stamp(page, epoch uint64) uint32 {
	return uint32(1<<31 | (page>>v.shift&0x7fff)<<16 | epoch&0xffff)
}

// pageSpan returns the first and last page numbers of [abs, abs+n), n > 0.
func pageSpan(abs int64, n int) (first, last uint64) {
	return uint64(abs) >> mappedPageShift, uint64(abs+int64(n)-1) >> mappedPageShift
}

// resident reports whether every page of [abs, abs+n) was stamped in this
// residency epoch or the previous one, and stale whether one of them was
// stamped in the previous one.
func (v *mappedView) resident(abs int64, n int) (ok, stale bool) {
	epoch := v.epoch()
	first, last := pageSpan(abs, n)
	for page := first; page <= last; page++ {
		switch v.pages[page&v.mask].Load() {
		case v.stamp(page, epoch):
		case v.stamp(page, epoch-1):
			stale = true
		default:
			return false, false
		}
	}
	return true, stale
}

// markResident stamps the pages of [abs, abs+n), which a system call has
// just found or put in the page cache.
func (v *mappedView) markResident(abs int64, n int) {
	if v == nil || n <= 0 {
		return
	}
	epoch := v.epoch()
	first, last := pageSpan(abs, n)
	for page := first; page <= last; page++ {
		v.pages[page&v.mask].Store(v.stamp(page, epoch))
	}
}

// forget clears the stamps of the pages of [abs, abs+n).
func (v *mappedView) forget(abs int64, n int) {
	first, last := pageSpan(abs, n)
	for page := first; page <= last; page++ {
		v.pages[page&v.mask].Store(0)
	}
}

// tryCopyOut copies [abs, abs+len(p)) of the file into p if its pages are
// stamped resident and the copy does not fault. It reports whether it did.
func (v *mappedView) tryCopyOut(p []byte, abs int64) bool { return v.tryCopy(p, abs, false) }

// tryCopyIn copies p to [abs, abs+len(p)) of the file, as tryCopyOut.
func (v *mappedView) tryCopyIn(p []byte, abs int64) bool { return v.tryCopy(p, abs, true) }

// tryCopy copies between p and [abs, abs+len(p)) of the file, into the
// file if toFile, if the range is within the mapping, its pages are
// stamped resident and the copy does not fault. It reports whether it did.
func (v *mappedView) tryCopy(p []byte, abs int64, toFile bool) bool {
	if v == nil || toFile && !v.writable || abs < v.base || len(p) == 0 || abs+int64(len(p)) > v.base+int64(len(v.data)) {
		return false
	}
	ok, stale := v.resident(abs, len(p))
	if !ok {
		return false
	}
	dst, src := p, v.data[abs-v.base:abs-v.base+int64(len(p))]
	if toFile {
		dst, src = src, dst
	}
	if !v.copyRecovering(dst, src, abs) {
		return false
	}
	if stale {
		v.renew(abs, len(p))
	}
	return true
}

// renew stamps again, for this epoch, the pages of [abs, abs+n) whose
// stamps are from the previous one: they were just copied, so they are
// in memory, and a page in use stays stamped instead of going back to the
// system call every other window. It swaps only a stamp it expects, so it
// neither undoes a concurrent forget (after another copy's fault) nor
// takes the slot of a page stamped there meanwhile, and it leaves a
// current stamp alone, so a hot page's slot is not written on every copy.
func (v *mappedView) renew(abs int64, n int) {
	epoch := v.epoch()
	first, last := pageSpan(abs, n)
	for page := first; page <= last; page++ {
		v.pages[page&v.mask].CompareAndSwap(v.stamp(page, epoch-1), v.stamp(page, epoch))
	}
}

// copyRecovering copies src to dst, one of them within the mapping at
// abs, and reports whether the copy finished without a fault. After a
// fault (SIGBUS: an I/O error, a file cut short, no room for a page) it
// forgets the pages, so the next I/O there takes the system call, which
// reports the error.
func (v *mappedView) copyRecovering(dst, src []byte, abs int64) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			if _, fault := r.(interface{ Addr() uintptr }); !fault {
				panic(r)
			}
			v.forget(abs, len(src))
			ok = false
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	copy(dst, src)
	return true
}
