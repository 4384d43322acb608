package bench

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
)

// This file holds the files the benches create: the targets' backing
// files, and the source nbdcopy copies in.

// sparseFile creates a sparse file of size bytes in dir: a fresh backing
// file for a Compare cell. If warm, it is then read through once, so that
// its pages are in the page cache.
func sparseFile(dir string, size int64, warm bool) (string, error) {
	return createFile(dir, "ironbench-*.img", func(f *os.File) error {
		if err := f.Truncate(size); err != nil || !warm {
			return err
		}
		return warmFile(f)
	})
}

// warmFile reads f through from its start, so that its pages are in the
// page cache (zeroed ones, for a sparse file's unwritten blocks).
func warmFile(f *os.File) error {
	if _, err := io.CopyBuffer(io.Discard, io.NewSectionReader(f, 0, 1<<62), make([]byte, 1<<20)); err != nil {
		return fmt.Errorf("bench: reading %s into the page cache: %w", f.Name(), err)
	}
	return nil
}

// filledFile creates a file of size bytes in dir and writes it out in
// full: every pass then overwrites blocks already allocated, rather than
// the first one paying for the allocation.
func filledFile(dir string, size int64) (string, error) {
	return writeFile(dir, "ironbench-nbd-*.img", size, nil)
}

// randomFile creates a file of size random bytes in dir.
func randomFile(dir string, size int64) (string, error) {
	return writeFile(dir, "ironbench-nbd-*.src", size, rand.NewChaCha8([32]byte{7, 8, 9}))
}

// writeFile creates a file named by pattern in dir holding size bytes from
// src (zeros if src is nil), synced to its device.
func writeFile(dir, pattern string, size int64, src io.Reader) (string, error) {
	return createFile(dir, pattern, func(f *os.File) error {
		buf := make([]byte, 1<<20)
		for left := size; left > 0; {
			n := min(left, int64(len(buf)))
			if src != nil {
				_, _ = io.ReadFull(src, buf[:n])
			}
			if _, err := f.Write(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		return f.Sync()
	})
}

// createFile creates a file named by pattern in dir, has fill write it,
// and returns its name; if anything fails, the file is removed.
func createFile(dir, pattern string, fill func(*os.File) error) (string, error) {
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return "", err
	}
	err = fill(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}
