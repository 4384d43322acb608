// Package nbdtest provides NBD backends for tests: an in-memory disk that
// counts what it is asked to do, and a file-backed one.
package nbdtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrInjected is returned by a Memory whose FailNext was set.
var ErrInjected = errors.New("nbdtest: injected failure")

// Memory is an in-memory disk implementing nbd.Backend and every optional
// capability (ZeroWriter, Trimmer, ReadOnlyBackend, MultiConnBackend). It is
// safe for concurrent use; its counters let tests see what the server asked
// for.
type Memory struct {
	mu       sync.RWMutex
	data     []byte
	readOnly bool

	// Reads, Writes, FUAWrites, Flushes, Zeroes, FUAZeroes and Trims count
	// calls to the backend methods.
	Reads, Writes, FUAWrites, Flushes, Zeroes, FUAZeroes, Trims atomic.Int64
	// FailNext, when positive, makes that many following calls fail with
	// ErrInjected.
	FailNext atomic.Int64
	// Delay, when set, is awaited (or ctx) before every read and write.
	Delay chan struct{}
}

// NewMemory returns a zeroed disk of size bytes.
func NewMemory(size int64) *Memory {
	return &Memory{data: make([]byte, size)}
}

// NewReadOnlyMemory returns a read-only disk holding a copy of data.
func NewReadOnlyMemory(data []byte) *Memory {
	return &Memory{data: append([]byte(nil), data...), readOnly: true}
}

// Size reports the disk's size.
func (m *Memory) Size() int64 { return int64(len(m.data)) }

// ReadOnly reports whether the disk refuses writes.
func (m *Memory) ReadOnly() bool { return m.readOnly }

// CanMultiConn reports true: there is no per-connection cache.
func (m *Memory) CanMultiConn() bool { return true }

// Bytes returns a copy of the disk's contents.
func (m *Memory) Bytes() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return append([]byte(nil), m.data...)
}

// prepare applies Delay and FailNext.
func (m *Memory) prepare(ctx context.Context) error {
	if m.Delay != nil {
		select {
		case <-m.Delay:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if m.FailNext.Load() > 0 && m.FailNext.Add(-1) >= 0 {
		return ErrInjected
	}
	return nil
}

func (m *Memory) check(off, n int64) error {
	if off < 0 || n < 0 || off > int64(len(m.data)) || n > int64(len(m.data))-off {
		return errors.New("nbdtest: access beyond the end of the disk")
	}
	return nil
}

// ReadAt copies the bytes at off into p.
func (m *Memory) ReadAt(ctx context.Context, p []byte, off int64) error {
	m.Reads.Add(1)
	if err := m.prepare(ctx); err != nil {
		return err
	}
	if err := m.check(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.RLock()
	copy(p, m.data[off:])
	m.mu.RUnlock()
	return nil
}

// WriteAt copies p into the disk at off.
func (m *Memory) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	m.Writes.Add(1)
	if fua {
		m.FUAWrites.Add(1)
	}
	if err := m.prepare(ctx); err != nil {
		return err
	}
	if err := m.check(off, int64(len(p))); err != nil {
		return err
	}
	m.mu.Lock()
	copy(m.data[off:], p)
	m.mu.Unlock()
	return nil
}

// Flush does nothing but count: memory is as durable as it gets.
func (m *Memory) Flush(ctx context.Context) error {
	m.Flushes.Add(1)
	return m.prepare(ctx)
}

// WriteZeroesAt zeroes length bytes at off.
func (m *Memory) WriteZeroesAt(ctx context.Context, off, length int64, fua bool) error {
	m.Zeroes.Add(1)
	if fua {
		m.FUAZeroes.Add(1)
	}
	return m.zero(ctx, off, length)
}

// Trim zeroes length bytes at off (a trimmed range may read as anything).
func (m *Memory) Trim(ctx context.Context, off, length int64) error {
	m.Trims.Add(1)
	return m.zero(ctx, off, length)
}

// zero clears length bytes at off.
func (m *Memory) zero(ctx context.Context, off, length int64) error {
	if err := m.prepare(ctx); err != nil {
		return err
	}
	if err := m.check(off, length); err != nil {
		return err
	}
	m.mu.Lock()
	clear(m.data[off : off+length])
	m.mu.Unlock()
	return nil
}
