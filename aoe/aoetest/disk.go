package aoetest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"
)

// MemDisk is an in-memory disk for tests: it has the methods of a target
// Backend (ReadAt, WriteAt, Sync, Size), is safe for concurrent use, and
// counts its syncs. Several targets may share one, as two paths to one
// disk.
type MemDisk struct {
	mu    sync.Mutex
	b     []byte
	syncs atomic.Int64
}

// NewMemDisk returns a zero-filled disk of size bytes.
func NewMemDisk(size int) *MemDisk { return &MemDisk{b: make([]byte, size)} }

// ReadAt reads len(p) bytes at off. A read that does not fit in the disk
// reads nothing and returns io.EOF.
func (d *MemDisk) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return 0, io.EOF
	}
	return copy(p, d.b[off:]), nil
}

// WriteAt writes p at off. A write that does not fit in the disk writes
// nothing and returns an error wrapping io.ErrShortWrite.
func (d *MemDisk) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return 0, fmt.Errorf("aoetest: disk write of %d bytes at %d, past its %d: %w", len(p), off, len(d.b), io.ErrShortWrite)
	}
	return copy(d.b[off:], p), nil
}

// Sync counts a sync; the data is already as durable as it gets.
func (d *MemDisk) Sync() error { d.syncs.Add(1); return nil }

// Size returns the disk's size in bytes.
func (d *MemDisk) Size() int64 { return int64(len(d.b)) }

// Syncs returns how many times Sync has been called.
func (d *MemDisk) Syncs() int64 { return d.syncs.Load() }

// Bytes returns a copy of the disk's contents.
func (d *MemDisk) Bytes() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return bytes.Clone(d.b)
}

// Sum512 returns the SHA-512 of the disk's contents.
func (d *MemDisk) Sum512() [sha512.Size]byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return sha512.Sum512(d.b)
}

// RandomBytes returns n random bytes.
func RandomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// SparseFile creates a file of size bytes holding zeroes (a sparse file
// where the file system allows) at path and returns path. Put it in
// t.TempDir() or another directory the test removes.
func SparseFile(t testing.TB, path string, size int64) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// FileSum returns the SHA-512 of the n bytes at off in the file at path,
// or of all from off to the end if n is negative. It fails the test if the
// file cannot be read.
func FileSum(t testing.TB, path string, off, n int64) [sha512.Size]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n < 0 {
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		n = max(fi.Size()-off, 0)
	}
	h := sha512.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		t.Fatal(err)
	}
	var sum [sha512.Size]byte
	h.Sum(sum[:0])
	return sum
}
