package nbdkernel

import (
	"fmt"
	"testing"
)

func TestParseDevice(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"/dev/nbd0", 0, false},
		{"/dev/nbd3", 3, false},
		{"nbd15", 15, false},
		{"/dev/nbd1048575", maxIndex, false},
		{"/dev/nbd1048576", 0, true},
		{"/dev/nbd0p1", 0, true},
		{"/dev/nbd", 0, true},
		{"/dev/sda", 0, true},
		{"/dev/nbd-1", 0, true},
		{"/dev/nbd+1", 0, true},
		{"/dev/nbd01", 0, true},
		{"/dev/nbd 1", 0, true},
		{"/dev/nbd99999999999999999999", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseDevice(tt.in)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseDevice(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func FuzzParseDevice(f *testing.F) {
	for _, s := range []string{"/dev/nbd0", "nbd12", "/dev/nbd0p1", "/dev/nbd", "/dev/nbd007"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseDevice(s)
		if err != nil {
			return
		}
		if n < 0 || n > maxIndex {
			t.Fatalf("ParseDevice(%q) = %d out of range", s, n)
		}
		if back, err := ParseDevice(fmt.Sprintf("/dev/nbd%d", n)); err != nil || back != n {
			t.Fatalf("ParseDevice round trip of %d: %d, %v", n, back, err)
		}
	})
}
