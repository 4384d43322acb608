package main

import (
	"reflect"
	"strings"
	"testing"
)

// TestPermuteArgs shows the canonical form the getopt emulation hands to
// the flag package.
func TestPermuteArgs(t *testing.T) {
	table := newOptionTable(flags())
	tests := []struct {
		args  string
		posix bool
		want  string
	}{
		{"1 2 eth0 f", false, "-- 1 2 eth0 f"},
		{"-rs -b8 1 2 eth0 f", false, "--read-only --sync --buffers=8 -- 1 2 eth0 f"},
		{"-rb 8 1 2 eth0 f", false, "--read-only --buffers=8 -- 1 2 eth0 f"},
		{"1 2 eth0 f -r -m aa,bb -o 8", false, "--read-only --mac=aa,bb --offset=8 -- 1 2 eth0 f"},
		{"-m -r 1 2 eth0 f", false, "--mac=-r -- 1 2 eth0 f"}, // a value may start with '-'
		{"-r -- -s 2 eth0 f", false, "--read-only -- -s 2 eth0 f"},
		{"- 2 eth0 f", false, "-- - 2 eth0 f"},
		{"--buffers 8 --offset=0x10 --read 1", false, "--buffers=8 --offset=0x10 --read-only -- 1"},
		{"1 2 eth0 f -r", true, "-- 1 2 eth0 f -r"},
		{"-r 1 2 eth0 f -s", true, "--read-only -- 1 2 eth0 f -s"},
	}
	for _, tt := range tests {
		got, err := permuteArgs(table, strings.Fields(tt.args), tt.posix)
		if err != nil {
			t.Errorf("permuteArgs(%q, posix=%v): %v", tt.args, tt.posix, err)
			continue
		}
		if want := strings.Fields(tt.want); !reflect.DeepEqual(got, want) {
			t.Errorf("permuteArgs(%q, posix=%v) = %q, want %q", tt.args, tt.posix, got, want)
		}
	}
}
