package main

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/ironblade/ironblade/bench"
)

// parseInts reads a comma-separated list of integers from lo to hi.
func parseInts(s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < lo || n > hi {
			return nil, fmt.Errorf("%q: want integers from %d to %d, separated by commas", f, lo, hi)
		}
		out = append(out, n)
	}
	return out, nil
}

// parseOps reads a comma-separated list of read and write.
func parseOps(s string) ([]bench.Op, error) {
	var out []bench.Op
	for _, f := range strings.Split(s, ",") {
		op, err := bench.ParseOp(f)
		if err != nil {
			return nil, err
		}
		out = append(out, op)
	}
	return out, nil
}

// parseModes reads a comma-separated list of no (plain) and yes (-s).
func parseModes(s string) ([]bool, error) {
	var out []bool
	for _, f := range strings.Split(s, ",") {
		switch strings.ToLower(strings.TrimSpace(f)) {
		case "no", "off", "false":
			out = append(out, false)
		case "yes", "on", "true", "s", "-s":
			out = append(out, true)
		default:
			return nil, fmt.Errorf("%q: want no or yes", f)
		}
	}
	return out, nil
}

// parsePin reads --pin: on, off, both (pinned, then unpinned) or auto
// (both where the machine can pin, else off, saying why on progress).
func parsePin(s string, progress io.Writer) ([]bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "on", "yes", "true":
		return []bool{true}, nil
	case "off", "no", "false":
		return []bool{false}, nil
	case "both":
		return []bool{true, false}, nil
	case "auto":
		modes, why := bench.DefaultPinModes()
		if why != nil {
			fmt.Fprintf(progress, "not pinning: %v\n", why)
		}
		return modes, nil
	}
	return nil, fmt.Errorf("%q: want on, off, both or auto", s)
}

// sizeUnits are the suffixes parseSize knows: SI and binary.
var sizeUnits = []struct {
	suffix string
	factor int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// parseSize reads a byte count: a number with an optional unit (K, M, G
// and T are binary, as in dd; KB, MB... are decimal; KiB, MiB... binary).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	factor := int64(1)
	for _, u := range sizeUnits {
		if len(s) > len(u.suffix) && strings.EqualFold(s[len(s)-len(u.suffix):], u.suffix) {
			s, factor = strings.TrimSpace(s[:len(s)-len(u.suffix)]), u.factor
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, errors.New("want a number of bytes, optionally with a unit such as KiB, MiB or GiB")
	}
	if n > (1<<63-1)/factor {
		return 0, errors.New("size too large")
	}
	return n * factor, nil
}

// humanBytes formats n in binary units.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return fmt.Sprintf("%d GiB", n>>30)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
