package bench

import (
	"os"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestSparseFileWarm checks that a warm backing file has every page in the
// page cache before its cell, and a cold one none (mincore).
func TestSparseFileWarm(t *testing.T) {
	const size = 1 << 20
	for _, tc := range []struct {
		name string
		warm bool
	}{{"warm", true}, {"cold", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if fs := fileSystem(dir); fs == "tmpfs" {
				// Reads of a hole on tmpfs map the shared zero page and
				// cache nothing.
				t.Skipf("bench: %s is on tmpfs, which caches no pages for a sparse file's holes", dir)
			}
			name, err := sparseFile(dir, size, tc.warm)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(name) })
			f, err := os.Open(name)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(m)
			vec := make([]byte, size/os.Getpagesize())
			if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), size, uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
				t.Fatalf("mincore: %v", errno)
			}
			cached := 0
			for _, v := range vec {
				cached += int(v & 1)
			}
			if want := map[bool]int{true: len(vec), false: 0}[tc.warm]; cached != want {
				t.Errorf("%d of %d pages in the page cache, want %d", cached, len(vec), want)
			}
		})
	}
}
