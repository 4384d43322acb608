package nbd

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Backend is the storage behind one export. The server calls its methods
// concurrently, from many requests and connections at once; offsets and
// lengths have been checked against Size (and against the minimum block size
// of a BlockSizer) before a method is called.
//
// An error returned by a method is sent to the client as EIO, unless it is
// (or wraps) an Errno or one of the syscall errors the server knows how to
// translate (ENOSPC, EPERM, EROFS, EINVAL, ...). Methods should return
// promptly once ctx is cancelled: that happens when the server shuts down or
// the connection breaks (not when the client disconnects properly: requests
// in flight then complete).
type Backend interface {
	// Size reports the export's size in bytes. It must not change while a
	// connection is using the export.
	Size() int64
	// ReadAt fills p with the bytes at off.
	ReadAt(ctx context.Context, p []byte, off int64) error
	// WriteAt writes p at off. With fua set the data must be on
	// non-volatile storage before WriteAt returns. It must neither modify
	// nor retain p.
	WriteAt(ctx context.Context, p []byte, off int64, fua bool) error
	// Flush makes every write that has completed durable.
	Flush(ctx context.Context) error
}

// ZeroWriter is implemented by a Backend that zeroes ranges itself. The range
// must read back as zeroes and stay allocated (the server accepts
// NBD_CMD_FLAG_NO_HOLE and relies on that). A Backend without it still
// offers NBD_CMD_WRITE_ZEROES: the server then writes buffers of zeroes with
// WriteAt.
type ZeroWriter interface {
	WriteZeroesAt(ctx context.Context, off, length int64, fua bool) error
}

// Trimmer is implemented by a Backend that can discard ranges; only then is
// NBD_CMD_TRIM offered. After a trim the range's contents are undefined.
type Trimmer interface {
	Trim(ctx context.Context, off, length int64) error
}

// ReadOnlyBackend is implemented by a Backend that may refuse writes; when
// ReadOnly reports true the export is advertised read-only and every write,
// zero and trim request fails with EPERM.
type ReadOnlyBackend interface {
	ReadOnly() bool
}

// MultiConnBackend is implemented by a Backend whose flushes and FUA writes
// are visible through every connection once they complete (no
// per-connection cache); when CanMultiConn reports true the export
// advertises NBD_FLAG_CAN_MULTI_CONN.
type MultiConnBackend interface {
	CanMultiConn() bool
}

// BlockSizer is implemented by a Backend with a minimum block size above 1
// byte (a power of two no larger than 64 KiB) or a preferred block size other
// than 4096. The server advertises the sizes and fails requests that are not
// aligned to the minimum with EINVAL.
type BlockSizer interface {
	BlockSize() (minimum, preferred uint32)
}

// ExportInfo describes an export in NBD_OPT_LIST replies and in
// NBD_INFO_NAME and NBD_INFO_DESCRIPTION.
type ExportInfo struct {
	// Name is what clients ask for.
	Name string
	// Description is free text for humans; it may be empty.
	Description string
}

// Exports is the set of exports a Server offers. Its methods are called
// concurrently.
//
// A client asking for the empty name gets Lookup(""); if that fails and List
// has exactly one entry, the server serves that one (the "default export").
type Exports interface {
	// Lookup returns the export with the given name.
	Lookup(name string) (Backend, bool)
	// List describes every export, in the order to present them.
	List() []ExportInfo
}

// ExportMap is an Exports held in a map; exports can be added and removed
// while a server uses it (connections already using an export keep it). The
// zero value is an empty set ready to use.
type ExportMap struct {
	mu sync.RWMutex
	m  map[string]exportEntry
}

type exportEntry struct {
	backend     Backend
	description string
}

// Add adds or replaces the export name.
func (e *ExportMap) Add(name, description string, b Backend) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.m == nil {
		e.m = make(map[string]exportEntry)
	}
	e.m[name] = exportEntry{backend: b, description: description}
}

// Remove removes the export name, if present.
func (e *ExportMap) Remove(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, name)
}

// Lookup returns the export with the given name.
func (e *ExportMap) Lookup(name string) (Backend, bool) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	x, ok := e.m[name]
	return x.backend, ok
}

// List describes the exports sorted by name.
func (e *ExportMap) List() []ExportInfo {
	e.mu.RLock()
	list := make([]ExportInfo, 0, len(e.m))
	for name, x := range e.m {
		list = append(list, ExportInfo{Name: name, Description: x.description})
	}
	e.mu.RUnlock()
	slices.SortFunc(list, func(a, b ExportInfo) int { return strings.Compare(a.Name, b.Name) })
	return list
}

// capabilities are what a Backend offers beyond the required methods,
// resolved once per connection.
type capabilities struct {
	size      int64
	readOnly  bool
	multiConn bool
	zeroer    ZeroWriter
	trimmer   Trimmer
	minBlock  uint32
	prefBlock uint32
}

func capabilitiesOf(b Backend) capabilities {
	c := capabilities{size: max(b.Size(), 0), minBlock: 1, prefBlock: preferredBlockSize}
	if ro, ok := b.(ReadOnlyBackend); ok {
		c.readOnly = ro.ReadOnly()
	}
	if mc, ok := b.(MultiConnBackend); ok {
		c.multiConn = mc.CanMultiConn()
	}
	c.zeroer, _ = b.(ZeroWriter)
	c.trimmer, _ = b.(Trimmer)
	if bs, ok := b.(BlockSizer); ok {
		minimum, preferred := bs.BlockSize()
		if validBlockSize(minimum, 1, 64<<10) {
			c.minBlock = minimum
		}
		if validBlockSize(preferred, max(c.minBlock, 512), DefaultMaxPayload) {
			c.prefBlock = preferred
		}
		c.prefBlock = max(c.prefBlock, c.minBlock)
	}
	return c
}

func validBlockSize(v, lo, hi uint32) bool {
	return v >= lo && v <= hi && v&(v-1) == 0
}

// flags returns the transmission flags for the export; structured tells
// whether the connection negotiated structured replies.
func (c *capabilities) flags(structured bool) uint16 {
	f := FlagHasFlags | FlagSendFlush
	switch {
	case c.readOnly:
		// Write-only features are not offered on a read-only export.
		f |= FlagReadOnly
	case c.trimmer != nil:
		f |= FlagSendFUA | FlagSendWriteZeroes | FlagSendTrim
	default:
		f |= FlagSendFUA | FlagSendWriteZeroes
	}
	if c.multiConn {
		f |= FlagCanMultiConn
	}
	if structured {
		// Reads are always answered with one data chunk, so
		// "don't fragment" costs nothing.
		f |= FlagSendDF
	}
	return f
}

// TransmissionFlags returns the transmission flags the server advertises for
// b on a connection without structured replies, which is what the Linux
// kernel's nbd driver expects as its server flags. A writable export always
// offers FLUSH, FUA and WRITE_ZEROES (see ZeroWriter), and TRIM only with a
// Trimmer; a read-only one offers FLUSH alone. Multi-conn is offered only
// when b says so.
func TransmissionFlags(b Backend) uint16 {
	c := capabilitiesOf(b)
	return c.flags(false)
}
