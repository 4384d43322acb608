package target

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// FileOptions say which part of a file or block device a FileBackend
// serves, and how it opens it.
type FileOptions struct {
	// Offset is where the export starts, in bytes (vblade -o, which counts
	// sectors).
	Offset int64
	// Length is the export's size in bytes; 0 means to the end of the file
	// (vblade -l). The size is rounded down to whole sectors.
	Length int64
	// Direct opens with O_DIRECT, bypassing the page cache (vblade -d).
	Direct bool
	// ReadOnly opens the file read-only; writes fail (vblade -r).
	ReadOnly bool
	// SyncWrites says the export acknowledges writes only once they are
	// durable (vblade -s): writes then always take pwrite rather than the
	// file's mapping. Each is followed by a sync, which costs far more than
	// the system call, and a system call per write is what an audit of
	// the write-then-sync order (strace) can see.
	SyncWrites bool
}

// FileBackend serves a window of a regular file or block device. It
// implements Backend; WriteAt and ReadAt are pwrite and pread, Sync is
// fdatasync.
//
// With FileOptions.Direct, I/O whose buffer, offset and length suit
// O_DIRECT goes straight to the file; other I/O goes through aligned
// bounce buffers, read-modify-writing partial blocks when the device's
// block is larger than a sector.
type FileBackend struct {
	f        *os.File
	raw      syscall.RawConn
	fd       uintptr // f's descriptor, for TryReadAt's preadv2
	offset   int64
	size     int64
	readOnly bool

	direct   bool
	align    int64   // O_DIRECT offset and length alignment
	memAlign uintptr // O_DIRECT buffer alignment
	// partial is held exclusively by a write that read-modify-writes
	// blocks, shared by other direct writes, so no write is lost between
	// the read and the write of a block.
	partial sync.RWMutex
	bounce  sync.Pool // *[]byte, aligned, bounceSize long

	noDSync atomic.Bool // pwritev2 with RWF_DSYNC was refused: old kernel

	// streams are the sequential streams readAhead follows.
	streamsMu sync.Mutex
	streams   readStreams

	// view maps the file for TryReadAt (and TryWriteAt if mapWrites),
	// unless it is open with O_DIRECT or cannot be mapped (nil).
	view      *mappedView
	mapWrites bool
}

// bounceSize fits the largest AoE request (255 sectors) widened by a block
// at each end.
const bounceSize = 255*512 + 2*pageSize

// OpenFile opens a regular file or a block device as a Backend. The size
// of a block device comes from the BLKGETSIZE64 ioctl.
func OpenFile(path string, opt FileOptions) (*FileBackend, error) {
	if opt.Offset < 0 || opt.Length < 0 {
		return nil, fmt.Errorf("target: open %s: negative offset or length", path)
	}
	flags := os.O_RDWR
	if opt.ReadOnly {
		flags = os.O_RDONLY
	}
	if opt.Direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		if opt.Direct && errors.Is(err, unix.EINVAL) {
			return nil, fmt.Errorf("target: open %s: direct I/O not supported here: %w", path, err)
		}
		return nil, fmt.Errorf("target: %w", err) // the PathError says "open PATH"
	}
	b, err := newFileBackend(f, opt)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("target: open %s: %w", path, err)
	}
	return b, nil
}

func newFileBackend(f *os.File, opt FileOptions) (*FileBackend, error) {
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var total int64
	mode := fi.Mode()
	switch {
	case mode.IsRegular():
		total = fi.Size()
	case mode&os.ModeDevice != 0 && mode&os.ModeCharDevice == 0:
		var size uint64
		var ioErr error
		if err := raw.Control(func(fd uintptr) {
			size, ioErr = unix.IoctlGetUint64(int(fd), unix.BLKGETSIZE64)
		}); err != nil {
			return nil, err
		}
		if ioErr != nil {
			return nil, fmt.Errorf("BLKGETSIZE64: %w", ioErr)
		}
		total = int64(size)
	default:
		return nil, fmt.Errorf("not a regular file or block device (%s)", mode)
	}
	if opt.Offset > total {
		return nil, fmt.Errorf("offset %d beyond the end (%d bytes)", opt.Offset, total)
	}
	size := total - opt.Offset
	if opt.Length > 0 {
		if opt.Length > size {
			return nil, fmt.Errorf("offset %d and length %d beyond the end (%d bytes)", opt.Offset, opt.Length, total)
		}
		size = opt.Length
	}
	size -= size % 512
	if size == 0 {
		return nil, fmt.Errorf("no whole sector to serve (%d bytes from offset %d)", total, opt.Offset)
	}
	b := &FileBackend{f: f, raw: raw, fd: f.Fd(), offset: opt.Offset, size: size, readOnly: opt.ReadOnly, direct: opt.Direct,
		mapWrites: !opt.ReadOnly && !opt.SyncWrites}
	if opt.Direct {
		b.align, b.memAlign = directAlignment(raw, mode)
		if opt.Offset%b.align != 0 || (opt.Offset+size)%b.align != 0 {
			return nil, fmt.Errorf("direct I/O needs the window (offset %d, %d bytes) in whole %d-byte blocks", opt.Offset, size, b.align)
		}
		b.bounce.New = func() any {
			buf := alignedBuffer(bounceSize)
			return &buf
		}
	} else {
		b.view = newMappedView(int(b.fd), opt.Offset, opt.Offset+size, b.mapWrites)
	}
	return b, nil
}

// directAlignment asks the kernel what O_DIRECT needs (statx
// STATX_DIOALIGN, or the logical block size of a block device) and falls
// back to a page, which always works.
func directAlignment(raw syscall.RawConn, mode os.FileMode) (offsetAlign int64, memAlign uintptr) {
	offsetAlign, memAlign = pageSize, pageSize
	raw.Control(func(fd uintptr) {
		var stx unix.Statx_t
		err := unix.Statx(int(fd), "", unix.AT_EMPTY_PATH, unix.STATX_DIOALIGN, &stx)
		if err == nil && stx.Mask&unix.STATX_DIOALIGN != 0 && stx.Dio_offset_align > 0 {
			offsetAlign, memAlign = int64(stx.Dio_offset_align), uintptr(max(stx.Dio_mem_align, 1))
			return
		}
		if mode&os.ModeDevice != 0 {
			if n, err := unix.IoctlGetInt(int(fd), unix.BLKSSZGET); err == nil && n > 0 {
				offsetAlign, memAlign = int64(n), uintptr(n)
			}
		}
	})
	return max(offsetAlign, 512), memAlign
}

// alignedBuffer allocates n bytes starting on a page boundary.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+pageSize)
	off := (pageSize - int(uintptr(unsafe.Pointer(&b[0]))%pageSize)) % pageSize
	return b[off : off+n : off+n]
}

// Size implements Backend.
func (b *FileBackend) Size() int64 { return b.size }

// Close closes the file.
func (b *FileBackend) Close() error {
	return errors.Join(b.view.close(), b.f.Close())
}

// Sync implements Backend with fdatasync.
func (b *FileBackend) Sync() error {
	var err error
	if cerr := b.raw.Control(func(fd uintptr) { err = unix.Fdatasync(int(fd)) }); cerr != nil {
		return fmt.Errorf("target: sync: %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("target: sync: %w", err)
	}
	return nil
}

// WriteAtDurable implements DurableWriter with pwritev2 and RWF_DSYNC: the
// data and what is needed to read it back reach stable storage before it
// returns, as with O_DSYNC, so one call does what WriteAt and Sync would.
// A file open with O_DIRECT, or a kernel without RWF_DSYNC (before 4.7),
// gets ErrDurableUnsupported.
func (b *FileBackend) WriteAtDurable(p []byte, off int64) (int, error) {
	if b.readOnly {
		return 0, fmt.Errorf("target: durable write: %w", os.ErrPermission)
	}
	if b.direct || b.noDSync.Load() || len(p) == 0 {
		return 0, ErrDurableUnsupported
	}
	if off < 0 || off+int64(len(p)) > b.size {
		return 0, fmt.Errorf("target: durable write of %d bytes at %d: beyond the %d-byte export", len(p), off, b.size)
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	abs := b.offset + off
	for {
		n, _, errno := unix.Syscall6(unix.SYS_PWRITEV2, b.fd, uintptr(unsafe.Pointer(&iov)), 1,
			uintptr(abs), uintptr(uint64(abs)>>32>>32), unix.RWF_DSYNC)
		switch {
		case errno == unix.EINTR:
			continue
		case errno == unix.ENOSYS || errno == unix.EOPNOTSUPP || errno == unix.EINVAL:
			// The arguments are valid, so the kernel does not know
			// pwritev2 or the flag: never ask again.
			b.noDSync.Store(true)
			return 0, ErrDurableUnsupported
		case errno != 0:
			return 0, fmt.Errorf("target: durable write: %w", os.NewSyscallError("pwritev2", errno))
		case int(n) != len(p):
			return int(n), fmt.Errorf("target: durable write: %d of %d bytes written: %w", n, len(p), io.ErrShortWrite)
		}
		b.view.markResident(abs, int(n))
		return int(n), nil
	}
}

// directOK reports whether I/O of p at the absolute offset abs may bypass
// the bounce buffers.
func (b *FileBackend) directOK(p []byte, abs int64) bool {
	return !b.direct || (len(p) > 0 && uintptr(unsafe.Pointer(&p[0]))%b.memAlign == 0 &&
		int64(len(p))%b.align == 0 && abs%b.align == 0)
}

// bounds returns the aligned range [start, end) around [abs, abs+n).
func (b *FileBackend) bounds(abs int64, n int) (start, end int64) {
	start = abs - abs%b.align
	end = abs + int64(n)
	if r := end % b.align; r != 0 {
		end += b.align - r
	}
	return start, end
}

func (b *FileBackend) getBounce(n int64) (*[]byte, []byte) {
	if n > bounceSize {
		buf := alignedBuffer(int(n))
		return nil, buf
	}
	bp := b.bounce.Get().(*[]byte)
	return bp, (*bp)[:n]
}

func (b *FileBackend) putBounce(bp *[]byte) {
	if bp != nil {
		b.bounce.Put(bp)
	}
}

// ReadAt implements Backend: it reads from the export (offset 0 is its
// first byte). Reading past the end returns io.EOF.
func (b *FileBackend) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("target: read at %d: negative offset", off)
	}
	if off >= b.size {
		return 0, io.EOF
	}
	var eof error
	if rest := b.size - off; int64(len(p)) > rest {
		p, eof = p[:rest], io.EOF
	}
	abs := b.offset + off
	if b.directOK(p, abs) {
		n, err := b.f.ReadAt(p, abs)
		if err != nil {
			return n, fmt.Errorf("target: read: %w", err)
		}
		b.view.markResident(abs, n)
		b.readAhead(abs, n)
		return n, eof
	}
	start, end := b.bounds(abs, len(p))
	bp, buf := b.getBounce(end - start)
	defer b.putBounce(bp)
	n, err := b.f.ReadAt(buf, start)
	head := int(abs - start)
	if n < head+len(p) {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return 0, fmt.Errorf("target: read: %w", err)
	}
	return copy(p, buf[head:]), eof
}

// readAhead asks the kernel to read the next readAheadWindow bytes into
// the page cache after a read from the device at abs that continues one of
// the last sequential streams, so that the stream's next requests find
// their pages there and are answered by the receive loop without a
// worker. The kernel's own readahead keeps one stream per open file: two
// interleaved streams (nbdcopy reads an export as two) look random to it,
// and each request then waits for a device read of its own.
func (b *FileBackend) readAhead(abs int64, n int) {
	if b.direct {
		return
	}
	end := abs + int64(n)
	b.streamsMu.Lock()
	window := b.streams.advise(abs, end)
	b.streamsMu.Unlock()
	// Not beyond the export: the rest of a shared device is not its own.
	window = min(window, b.offset+b.size-end)
	if window > 0 {
		_ = unix.Fadvise(int(b.fd), end, window, unix.FADV_WILLNEED)
	}
}

// advise records a read of [abs, end) and returns how many bytes after end
// to read ahead, or 0.
func (rs *readStreams) advise(abs, end int64) int64 {
	st := rs.follow(abs, end)
	if st == nil || st.reads < readStreamMinReads {
		return 0
	}
	// The window grows with the stream, as the kernel's does: a few reads
	// that happen to follow each other cost little.
	window := min(readAheadWindow, int64(readAheadFirst)<<min(st.reads-readStreamMinReads, 16))
	if end+window/2 <= st.aheadTo {
		return 0 // most of it is asked for already
	}
	st.aheadTo = end + window
	return window
}

// Read-ahead of sequential streams: after readStreamMinReads reads that
// continue each other, readAheadFirst, doubling with each read up to
// readAheadWindow. With nbdcopy reading an export through ironaoe, 2 MiB
// windows made a cold read at MTU 1500 and 9000 1.5x and 1.25x faster, 8
// MiB 1.6x and 1.6x (docs/performance.md).
const (
	readStreamMinReads = 3
	readAheadFirst     = 256 << 10
	readAheadWindow    = 8 << 20
)

// readStream is a sequential stream of reads: where its last read ended,
// how many reads continued it, and how far it was asked to be read ahead.
type readStream struct {
	end, aheadTo int64
	last         int64 // where the last read started
	reads        int
	used         uint64 // for replacing the least recently used
}

// readStreams are the streams readAhead follows.
type readStreams struct {
	s    [8]readStream
	tick uint64
}

// follow records a read of [abs, end): it returns the stream the read
// continues (a read that starts where one ended, or within a request or
// two after it, as concurrent workers finish out of order), or records a
// new stream in the least recently used slot and returns nil.
func (rs *readStreams) follow(abs, end int64) *readStream {
	rs.tick++
	lru := &rs.s[0]
	for i := range rs.s {
		st := &rs.s[i]
		if st.end != 0 && abs >= st.end-readStreamSlack && abs <= st.end+readStreamSlack {
			// A read of the block the stream's last one read does not
			// count: one block read again and again is not a stream.
			// Reads behind the end do: workers finish a window's reads
			// out of order (counting only reads that moved the end on
			// made cold NBD reads at MTU 1500 take 30% longer).
			if abs != st.last {
				st.reads++
			}
			st.end = max(st.end, end)
			st.last = abs
			st.used = rs.tick
			return st
		}
		if st.used < lru.used {
			lru = st
		}
	}
	*lru = readStream{end: end, last: abs, used: rs.tick, reads: 1}
	return nil
}

// readStreamSlack is how far before or after a stream's end a read may
// start and still continue it: workers finish the reads of an initiator's
// window (64 jumbo frames, 544 KiB) out of order.
const readStreamSlack = 512 << 10

// TryReadAt implements NonblockingBackend: it reads what the page cache
// holds (through the file's mapping where it was found there lately, else
// preadv2 with RWF_NOWAIT) and returns ErrWouldBlock for anything else, or
// when the file is open with O_DIRECT. A read of uncached data starts the
// kernel's readahead without waiting for it, so the worker that reads it
// next finds it on the way (and on a fast disk this call may get it).
func (b *FileBackend) TryReadAt(p []byte, off int64) (int, error) {
	if b.direct || len(p) == 0 || off < 0 || off+int64(len(p)) > b.size {
		return 0, ErrWouldBlock // ReadAt knows what to do
	}
	if b.view.tryCopyOut(p, b.offset+off) {
		return len(p), nil
	}
	iov := unix.Iovec{Base: &p[0]}
	iov.SetLen(len(p))
	abs := b.offset + off
	n, _, errno := unix.Syscall6(unix.SYS_PREADV2, b.fd, uintptr(unsafe.Pointer(&iov)), 1,
		uintptr(abs), uintptr(uint64(abs)>>32>>32), unix.RWF_NOWAIT)
	if errno != 0 || int(n) != len(p) {
		// Not cached, partly cached, or an error that ReadAt will report
		// (or an old kernel without preadv2 or RWF_NOWAIT).
		return 0, ErrWouldBlock
	}
	b.view.markResident(abs, int(n))
	return int(n), nil
}

// TryWriteAt implements NonblockingBackend: a write to the page cache is a
// copy through the file's mapping where its pages were found there lately
// (unless FileOptions.SyncWrites), else WriteAt; one with O_DIRECT returns
// ErrWouldBlock.
func (b *FileBackend) TryWriteAt(p []byte, off int64) (int, error) {
	if b.direct {
		return 0, ErrWouldBlock
	}
	if b.mapWrites && off >= 0 && off+int64(len(p)) <= b.size && b.view.tryCopyIn(p, b.offset+off) {
		return len(p), nil
	}
	return b.WriteAt(p, off)
}

// WriteAt implements Backend: it writes within the export. Writing past
// its end, or to a read-only backend, fails.
func (b *FileBackend) WriteAt(p []byte, off int64) (int, error) {
	if b.readOnly {
		return 0, fmt.Errorf("target: write: %w", os.ErrPermission)
	}
	if off < 0 || off+int64(len(p)) > b.size {
		return 0, fmt.Errorf("target: write of %d bytes at %d: beyond the %d-byte export", len(p), off, b.size)
	}
	abs := b.offset + off
	if b.directOK(p, abs) {
		if b.direct {
			b.partial.RLock()
			defer b.partial.RUnlock()
		}
		n, err := b.f.WriteAt(p, abs)
		if err != nil {
			return n, fmt.Errorf("target: write: %w", err)
		}
		b.view.markResident(abs, n)
		return n, nil
	}
	start, end := b.bounds(abs, len(p))
	bp, buf := b.getBounce(end - start)
	defer b.putBounce(bp)
	head := int(abs - start)
	b.partial.Lock()
	defer b.partial.Unlock()
	// Read back the blocks the write only partly covers.
	headPartial := abs%b.align != 0
	tailPartial := (abs+int64(len(p)))%b.align != 0
	if headPartial {
		if _, err := b.f.ReadAt(buf[:b.align], start); err != nil {
			return 0, fmt.Errorf("target: write: read partial block: %w", err)
		}
	}
	if tailPartial && !(headPartial && end-start == b.align) {
		last := end - b.align
		if _, err := b.f.ReadAt(buf[last-start:], last); err != nil {
			return 0, fmt.Errorf("target: write: read partial block: %w", err)
		}
	}
	copy(buf[head:], p)
	if _, err := b.f.WriteAt(buf, start); err != nil {
		return 0, fmt.Errorf("target: write: %w", err)
	}
	return len(p), nil
}
