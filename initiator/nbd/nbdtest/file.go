package nbdtest

import (
	"context"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// File is a disk backed by a regular file, implementing nbd.Backend and
// nbd.Trimmer (by punching holes). It offers no ZeroWriter, so a server
// emulates WRITE_ZEROES on it.
type File struct {
	f        *os.File
	size     int64
	readOnly bool
}

// OpenFile opens path as a disk; its size is the file's size.
func OpenFile(path string, readOnly bool) (*File, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("nbdtest: open: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("nbdtest: open: %w", err)
	}
	return &File{f: f, size: fi.Size(), readOnly: readOnly}, nil
}

// Close closes the file.
func (d *File) Close() error { return d.f.Close() }

// Size reports the file's size when it was opened.
func (d *File) Size() int64 { return d.size }

// ReadOnly reports whether the file was opened read-only.
func (d *File) ReadOnly() bool { return d.readOnly }

// CanMultiConn reports true: every connection shares the page cache.
func (d *File) CanMultiConn() bool { return true }

// ReadAt reads from the file.
func (d *File) ReadAt(_ context.Context, p []byte, off int64) error {
	_, err := d.f.ReadAt(p, off)
	return err
}

// WriteAt writes to the file, syncing it when fua is set.
func (d *File) WriteAt(_ context.Context, p []byte, off int64, fua bool) error {
	if _, err := d.f.WriteAt(p, off); err != nil {
		return err
	}
	if fua {
		return unix.Fdatasync(int(d.f.Fd()))
	}
	return nil
}

// Flush syncs the file.
func (d *File) Flush(context.Context) error {
	return unix.Fdatasync(int(d.f.Fd()))
}

// Trim punches a hole in the file.
func (d *File) Trim(_ context.Context, off, length int64) error {
	return unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, length)
}
