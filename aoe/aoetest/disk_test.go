package aoetest_test

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/ironblade/ironblade/aoe/aoetest"
)

func TestMemDisk(t *testing.T) {
	d := aoetest.NewMemDisk(4096)
	if d.Size() != 4096 {
		t.Fatalf("Size %d, want 4096", d.Size())
	}
	data := aoetest.RandomBytes(1000)
	if len(data) != 1000 || bytes.Equal(data, make([]byte, 1000)) {
		t.Fatal("RandomBytes returned zeroes")
	}
	if n, err := d.WriteAt(data, 96); n != len(data) || err != nil {
		t.Fatalf("WriteAt = %d, %v", n, err)
	}
	back := make([]byte, len(data))
	if n, err := d.ReadAt(back, 96); n != len(back) || err != nil || !bytes.Equal(back, data) {
		t.Fatalf("ReadAt = %d, %v; same data %v", n, err, bytes.Equal(back, data))
	}
	want := make([]byte, 4096)
	copy(want[96:], data)
	if got := d.Bytes(); !bytes.Equal(got, want) {
		t.Error("Bytes differs from what was written")
	}
	if d.Sum512() != sha512.Sum512(want) {
		t.Error("Sum512 differs from the SHA-512 of the contents")
	}
	for _, off := range []int64{-1, 4096 - 999, 4096} {
		if n, err := d.ReadAt(back, off); n != 0 || err != io.EOF {
			t.Errorf("ReadAt at %d = %d, %v; want 0, EOF", off, n, err)
		}
		if n, err := d.WriteAt(data, off); n != 0 || !errors.Is(err, io.ErrShortWrite) {
			t.Errorf("WriteAt at %d = %d, %v; want 0, a short write", off, n, err)
		}
	}
	if got := d.Bytes(); !bytes.Equal(got, want) {
		t.Error("a refused write changed the disk")
	}
	for range 3 {
		if err := d.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	if d.Syncs() != 3 {
		t.Errorf("Syncs %d, want 3", d.Syncs())
	}
}

func TestSparseFileAndFileSum(t *testing.T) {
	path := aoetest.SparseFile(t, filepath.Join(t.TempDir(), "disk.img"), 1<<20)
	fi, err := os.Stat(path)
	if err != nil || fi.Size() != 1<<20 {
		t.Fatalf("SparseFile: %v, %v", fi, err)
	}
	data := aoetest.RandomBytes(5000)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 12345); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	whole := make([]byte, 1<<20)
	copy(whole[12345:], data)
	for _, tc := range []struct {
		off, n int64
		want   []byte
	}{
		{12345, 5000, data},
		{0, -1, whole},
		{0, 12345, whole[:12345]},
		{1000, -1, whole[1000:]},
	} {
		if got := aoetest.FileSum(t, path, tc.off, tc.n); got != sha512.Sum512(tc.want) {
			t.Errorf("FileSum(%d, %d) differs from the SHA-512 of those bytes", tc.off, tc.n)
		}
	}
}
