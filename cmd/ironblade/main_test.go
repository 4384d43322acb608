package main

import (
	"bytes"
	"errors"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// defaults returns the options of "ironblade 1 2 eth0 disk.img" with the
// given changes applied.
func defaults(change func(*options)) options {
	o := options{
		Shelf: 1, Slot: 2, Netif: "eth0", Filename: "disk.img",
		Buffers: defaultBuffers, LogFormat: "text", BusyPoll: defaultBusyPoll,
	}
	if change != nil {
		change(&o)
	}
	return o
}

func mustMAC(t testing.TB, s string) aoe.MAC {
	t.Helper()
	m, err := aoe.ParseMAC(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func noEnv(string) string { return "" }

// TestParseArgsVbladeForms checks that every way vblade 25 is invoked (its
// usage line and manual page, Debian's vblade@.service, init scripts and
// vblade-persist-convert, and what glibc getopt accepts) parses to the
// right options.
func TestParseArgsVbladeForms(t *testing.T) {
	macA := mustMAC(t, "10:22:33:44:55:66")
	macB := mustMAC(t, "22:33:44:55:66:77")
	// Debian's example -m starts with 11:22:33:44:55:66, a group address.
	debianWarning := []string{"-m: ignoring 11:22:33:44:55:66: a group or zero address is never an initiator's"}
	tests := []struct {
		name string
		args string // split on spaces
		want options
	}{
		{"operands only", "1 2 eth0 disk.img", defaults(nil)},
		{"manual page example", "11 1 eth0 /data/3TB", defaults(func(o *options) {
			o.Shelf, o.Slot, o.Filename = 11, 1, "/data/3TB"
		})},
		{"every vblade option, separate", "-b 16 -o 8 -l 2048 -d -s -r -m 102233445566 1 2 eth0 disk.img", defaults(func(o *options) {
			o.Buffers, o.Offset, o.Length, o.Direct, o.Sync, o.ReadOnly = 16, 8, 2048, true, true, true
			o.MACs = []aoe.MAC{macA}
		})},
		{"values attached", "-b16 -o8 -l2048 -m102233445566 1 2 eth0 disk.img", defaults(func(o *options) {
			o.Buffers, o.Offset, o.Length, o.MACs = 16, 8, 2048, []aoe.MAC{macA}
		})},
		{"bundled flags", "-rs 1 2 eth0 disk.img", defaults(func(o *options) { o.ReadOnly, o.Sync = true, true })},
		{"bundled flags dsr", "-dsr 1 2 eth0 disk.img", defaults(func(o *options) { o.Direct, o.Sync, o.ReadOnly = true, true, true })},
		{"bundle ending in a value option", "-rb 8 1 2 eth0 disk.img", defaults(func(o *options) { o.ReadOnly, o.Buffers = true, 8 })},
		{"bundle with attached value", "-srb8 1 2 eth0 disk.img", defaults(func(o *options) { o.Sync, o.ReadOnly, o.Buffers = true, true, 8 })},
		{"Debian vblade@.service: options after operands", "14 2 ens3 /dev/mapper/export -r -m 11:22:33:44:55:66,22:33:44:55:66:77 -o 8",
			defaults(func(o *options) {
				o.Shelf, o.Slot, o.Netif, o.Filename = 14, 2, "ens3", "/dev/mapper/export"
				o.ReadOnly, o.Offset, o.MACs, o.Warnings = true, 8, []aoe.MAC{macB}, debianWarning
			})},
		{"Debian init script: options first", "-m 10:22:33:44:55:66 -o 8 10 3 em3 /dev/mapper/export", defaults(func(o *options) {
			o.Shelf, o.Slot, o.Netif, o.Filename = 10, 3, "em3", "/dev/mapper/export"
			o.Offset, o.MACs = 8, []aoe.MAC{macA}
		})},
		{"vblade-persist-convert: bare hex list", "-m 102233445566,223344556677 0 0 eth0 disk.img", defaults(func(o *options) {
			o.Shelf, o.Slot, o.MACs = 0, 0, []aoe.MAC{macA, macB}
		})},
		{"options between operands", "1 -r 2 eth0 -s disk.img", defaults(func(o *options) { o.ReadOnly, o.Sync = true, true })},
		{"double dash ends options", "-r -- 1 2 eth0 -disk.img", defaults(func(o *options) { o.ReadOnly, o.Filename = true, "-disk.img" })},
		{"dash is an operand", "1 2 eth0 -", defaults(func(o *options) { o.Filename = "-" })},
		{"repeated -m accumulates", "-m 102233445566 -m 22:33:44:55:66:77 1 2 eth0 disk.img", defaults(func(o *options) {
			o.MACs = []aoe.MAC{macA, macB}
		})},
		{"upper case and mixed MAC forms", "-m 10:22:33:44:55:66,2233:4455:6677 1 2 eth0 disk.img", defaults(func(o *options) {
			o.MACs = []aoe.MAC{macA, macB}
		})},
		{"upper case MAC", "-m 1022334455AA 1 2 eth0 disk.img", defaults(func(o *options) {
			o.MACs = []aoe.MAC{{0x10, 0x22, 0x33, 0x44, 0x55, 0xaa}}
		})},
		{"last -b wins", "-b 4 -b 32 1 2 eth0 disk.img", defaults(func(o *options) { o.Buffers = 32 })},
		{"hex offset and length", "-o 0x10 -l 0x800 1 2 eth0 disk.img", defaults(func(o *options) { o.Offset, o.Length = 16, 2048 })},
		{"octal offset, as strtoll", "-o 010 1 2 eth0 disk.img", defaults(func(o *options) { o.Offset = 8 })},
		{"decimal shelf with leading zero, as atoi", "007 09 eth0 disk.img", defaults(func(o *options) { o.Shelf, o.Slot = 7, 9 })},
		{"largest addresses", "65534 254 eth0 disk.img", defaults(func(o *options) { o.Shelf, o.Slot = 65534, 254 })},
		{"vblade's default buffer count", "-b 16 1 2 eth0 disk.img", defaults(func(o *options) { o.Buffers = 16 })},
		{"smallest buffer count", "-b 2 1 2 eth0 disk.img", defaults(func(o *options) { o.Buffers = 2 })},
		{"huge buffer count is lowered", "-b 65535 1 2 eth0 disk.img", defaults(func(o *options) {
			o.Buffers = maxBuffers
			o.Warnings = []string{"-b 65535: using 4096 buffers, the most ironblade holds"}
		})},
		{"empty MAC in list is skipped", "-m 102233445566, 1 2 eth0 disk.img", defaults(func(o *options) {
			o.MACs = []aoe.MAC{macA}
			o.Warnings = []string{"-m: ignoring an empty MAC address in the list"}
		})},
		{"long equivalents", "--buffers 32 --offset=8 --length 100 --direct --sync --read-only --mac 102233445566 1 2 eth0 disk.img",
			defaults(func(o *options) {
				o.Buffers, o.Offset, o.Length, o.Direct, o.Sync, o.ReadOnly = 32, 8, 100, true, true, true
				o.MACs = []aoe.MAC{macA}
			})},
		{"ironblade options", "--state-dir /var/lib/ironblade --announce-interval 30s --metrics 127.0.0.1:9192 " +
			"--log-level debug --log-format json --workers 4 1 2 eth0 disk.img", defaults(func(o *options) {
			o.StateDir, o.AnnounceInterval, o.MetricsAddr = "/var/lib/ironblade", 30*time.Second, "127.0.0.1:9192"
			o.LogLevel, o.LogFormat, o.Workers = -4, "json", 4
		})},
		{"VLAN", "--vlan 42 1 2 eth0 disk.img", defaults(func(o *options) { o.VLAN = 42 })},
		{"VLAN, decimal with leading zero", "1 2 eth0 disk.img --vlan=0042", defaults(func(o *options) { o.VLAN = 42 })},
		{"largest VLAN", "--vlan 4094 1 2 eth0 disk.img", defaults(func(o *options) { o.VLAN = 4094 })},
		{"busy polling off", "--busy-poll 0 1 2 eth0 disk.img", defaults(func(o *options) { o.BusyPoll = 0 })},
		{"longest busy polling", "--busy-poll=1ms 1 2 eth0 disk.img", defaults(func(o *options) { o.BusyPoll = time.Millisecond })},
		{"unambiguous long prefix", "--read --sy 1 2 eth0 disk.img", defaults(func(o *options) { o.ReadOnly, o.Sync = true, true })},
		{"long options after operands", "1 2 eth0 disk.img --sync --buffers=8", defaults(func(o *options) { o.Sync, o.Buffers = true, 8 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseArgs(append([]string{"ironblade"}, strings.Fields(tt.args)...), noEnv, &bytes.Buffer{})
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseArgs(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
			}
		})
	}
}

// TestParseArgsRejects checks that bad command lines fail with a message
// that names the problem.
func TestParseArgsRejects(t *testing.T) {
	tests := []struct {
		args    []string
		env     map[string]string
		wantErr string
	}{
		{args: nil, wantErr: "missing shelf, slot, netif, filename"},
		{args: []string{"1", "2", "eth0"}, wantErr: "missing filename"},
		{args: []string{"1", "2", "eth0", "disk.img", "extra"}, wantErr: `too many operands, from "extra"`},
		{args: []string{"65535", "2", "eth0", "disk.img"}, wantErr: "shelf \"65535\": want a decimal number from 0 to 65534"},
		{args: []string{"x", "2", "eth0", "disk.img"}, wantErr: `shelf "x"`},
		{args: []string{"0x1", "2", "eth0", "disk.img"}, wantErr: `shelf "0x1"`},
		{args: []string{"1", "255", "eth0", "disk.img"}, wantErr: "slot \"255\": want a decimal number from 0 to 254"},
		{args: []string{"-1", "2", "eth0", "disk.img"}, wantErr: "invalid option -- '1'"},
		{args: []string{"1", "2", "", "disk.img"}, wantErr: "netif: empty"},
		{args: []string{"1", "2", "eth0", ""}, wantErr: "filename: empty"},
		{args: []string{"-b", "1", "1", "2", "eth0", "disk.img"}, wantErr: "window of 0"},
		{args: []string{"-b", "0", "1", "2", "eth0", "disk.img"}, wantErr: "buffer count must be at least 2"},
		{args: []string{"-b", "99999999999", "1", "2", "eth0", "disk.img"}, wantErr: "not a decimal number"},
		{args: []string{"-m", "ff:ff:ff:ff:ff:ff", "1", "2", "eth0", "disk.img"}, wantErr: "-m: no initiator's address left in the list"},
		{args: []string{"-m", "000000000000,", "1", "2", "eth0", "disk.img"}, wantErr: "-m: no initiator's address left"},
		{args: []string{"-m", strings.Repeat("020000000001,", 129), "1", "2", "eth0", "disk.img"}, wantErr: "129 MAC addresses; the MAC mask list holds at most 128"},
		{args: []string{"-b", "lots", "1", "2", "eth0", "disk.img"}, wantErr: `-b "lots": not a decimal number`},
		{args: []string{"1", "2", "eth0", "disk.img", "-b"}, wantErr: "option requires an argument -- 'b'"},
		{args: []string{"-o", "-1", "1", "2", "eth0", "disk.img"}, wantErr: `-o "-1": offset must be a number of sectors, 0 or more`},
		{args: []string{"-o", "8k", "1", "2", "eth0", "disk.img"}, wantErr: `-o "8k"`},
		{args: []string{"-l", "0", "1", "2", "eth0", "disk.img"}, wantErr: `-l "0": length must be a number of sectors, 1 or more`},
		{args: []string{"-o", "18014398509481983", "-l", "1", "1", "2", "eth0", "disk.img"}, wantErr: "beyond the largest possible file"},
		{args: []string{"-x", "1", "2", "eth0", "disk.img"}, wantErr: "invalid option -- 'x'"},
		{args: []string{"-m", "zz:zz:zz:zz:zz:zz", "1", "2", "eth0", "disk.img"}, wantErr: `bad MAC address "zz:zz:zz:zz:zz:zz"`},
		{args: []string{"-m", "1122334455", "1", "2", "eth0", "disk.img"}, wantErr: `bad MAC address "1122334455"`},
		{args: []string{"-m", "102233445566,nope", "1", "2", "eth0", "disk.img"}, wantErr: `bad MAC address "nope"`},
		{args: []string{"--sync=yes", "1", "2", "eth0", "disk.img"}, wantErr: "option '--sync' doesn't allow an argument"},
		{args: []string{"--bogus", "1", "2", "eth0", "disk.img"}, wantErr: "unrecognized option '--bogus'"},
		{args: []string{"--s", "1", "2", "eth0", "disk.img"}, wantErr: "option '--s' is ambiguous; possibilities: --state-dir --sync"},
		{args: []string{"1", "2", "eth0", "disk.img", "--metrics"}, wantErr: "option '--metrics' requires an argument"},
		{args: []string{"--metrics", "9192", "1", "2", "eth0", "disk.img"}, wantErr: "--metrics \"9192\": want host:port"},
		{args: []string{"--log-format", "xml", "1", "2", "eth0", "disk.img"}, wantErr: "--log-format \"xml\": want text or json"},
		{args: []string{"--log-level", "loud", "1", "2", "eth0", "disk.img"}, wantErr: "--log-level \"loud\""},
		{args: []string{"--workers", "-1", "1", "2", "eth0", "disk.img"}, wantErr: "--workers -1"},
		{args: []string{"--announce-interval", "-1s", "1", "2", "eth0", "disk.img"}, wantErr: "must not be negative"},
		{args: []string{"--announce-interval", "often", "1", "2", "eth0", "disk.img"}, wantErr: "often"},
		{args: []string{"--state-dir=", "1", "2", "eth0", "disk.img"}, wantErr: "--state-dir: empty"},
		{args: []string{"--busy-poll", "-1us", "1", "2", "eth0", "disk.img"}, wantErr: "--busy-poll -1µs: want 0 (off) to 1ms"},
		{args: []string{"--busy-poll", "2ms", "1", "2", "eth0", "disk.img"}, wantErr: "--busy-poll 2ms"},
		{args: []string{"--busy-poll", "soon", "1", "2", "eth0", "disk.img"}, wantErr: "soon"},
		{args: []string{"--vlan", "0", "1", "2", "eth0", "disk.img"}, wantErr: `--vlan "0": want a decimal VLAN ID from 1 to 4094`},
		{args: []string{"--vlan", "4095", "1", "2", "eth0", "disk.img"}, wantErr: `--vlan "4095"`},
		{args: []string{"--vlan", "0x2a", "1", "2", "eth0", "disk.img"}, wantErr: `--vlan "0x2a"`},
		{args: []string{"--vlan", "-5", "1", "2", "eth0", "disk.img"}, wantErr: `--vlan "-5"`},
		{args: []string{"1", "2", "eth0", "disk.img", "--vlan"}, wantErr: "option '--vlan' requires an argument"},
		// With POSIXLY_CORRECT, getopt stops at the first operand: vblade
		// then sees five operands and prints its usage.
		{args: []string{"1", "2", "eth0", "disk.img", "-r"}, env: map[string]string{"POSIXLY_CORRECT": "1"}, wantErr: `too many operands, from "-r"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			_, err := parseArgs(append([]string{"ironblade"}, tt.args...), getenv, &bytes.Buffer{})
			if err == nil {
				t.Fatalf("parseArgs(%q) succeeded, want error %q", tt.args, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseArgs(%q) error %q, want it to contain %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

func TestHelpAndVersion(t *testing.T) {
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"ironblade [-b bufcnt] [-o offset]", "--state-dir DIR", "--sync, -s", "--metrics ADDR"}},
		{[]string{"-h"}, []string{"shelf slot netif filename"}},
		{[]string{"1", "2", "--help"}, []string{"shelf slot netif filename"}},
		{[]string{"--version"}, []string{"ironblade version " + version}},
	}
	for _, tt := range tests {
		var out bytes.Buffer
		_, err := parseArgs(append([]string{"ironblade"}, tt.args...), noEnv, &out)
		if !errors.Is(err, errHelpShown) {
			t.Fatalf("parseArgs(%q) = %v, want errHelpShown", tt.args, err)
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("parseArgs(%q) printed\n%s\nwant it to contain %q", tt.args, out.String(), w)
			}
		}
	}
}

func TestRunExitStatus(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if got := run([]string{"ironblade", "--version"}, noEnv, &stdout, &stderr); got != 0 {
		t.Errorf("run(--version) = %d, want 0", got)
	}
	stdout.Reset()
	if got := run([]string{"ironblade", "-b", "1", "1", "2", "eth0", "disk.img"}, noEnv, &stdout, &stderr); got != 2 {
		t.Errorf("run(-b 1) = %d, want 2 (usage)", got)
	}
	if !strings.Contains(stderr.String(), "ironblade: -b 1") || !strings.Contains(stderr.String(), "usage: ironblade") {
		t.Errorf("stderr = %q, want the error and the usage line", stderr.String())
	}
}

// TestGetoptMatchesVblade runs the real vblade (when installed) on the same
// command lines as ironblade, with a file that does not exist: vblade
// prints its usage for a command line it rejects and "open: ..." for one it
// accepts, before it needs root or a network. ironblade must agree, except
// where it is deliberately stricter.
func TestGetoptMatchesVblade(t *testing.T) {
	vblade, err := exec.LookPath("vblade")
	if err != nil {
		if vblade, err = exec.LookPath("/usr/sbin/vblade"); err != nil {
			t.Skip("vblade is not installed (apt-get install vblade): cannot compare command lines with it")
		}
	}
	missing := t.TempDir() + "/missing.img"
	lines := []string{
		"1 2 eth0 F",
		"-rs 1 2 eth0 F",
		"-dsr 1 2 eth0 F",
		"-rb 8 1 2 eth0 F",
		"-srb8 1 2 eth0 F",
		"-b8 -o8 -l8 1 2 eth0 F",
		"1 2 eth0 F -r -m 102233445566,223344556677 -o 8",
		"1 -r 2 eth0 -s F",
		"-r -- 1 2 eth0 F",
		"-o 0x10 -l 010 1 2 eth0 F",
		"1 2 eth0 F extra",
		"1 2 eth0",
		"-x 1 2 eth0 F",
		"1 2 eth0 F -b",
		"-o -1 1 2 eth0 F",
		"-l 0 1 2 eth0 F",
		"-b 0 1 2 eth0 F",
		"-- -r 1 2 eth0 F",
	}
	for _, line := range lines {
		args := strings.Fields(strings.ReplaceAll(line, "F", missing))
		out, _ := exec.Command(vblade, args...).CombinedOutput()
		vbladeAccepts := !strings.Contains(string(out), "usage:")
		_, err := parseArgs(append([]string{"ironblade"}, args...), noEnv, &bytes.Buffer{})
		if ours := err == nil; ours != vbladeAccepts {
			t.Errorf("%q: vblade accepts=%v (%q), ironblade accepts=%v (%v)", line, vbladeAccepts, strings.TrimSpace(string(out)), ours, err)
		}
	}
}

func TestParseMAC(t *testing.T) {
	want := aoe.MAC{0x00, 0x1a, 0x2b, 0x3c, 0x4d, 0x5e}
	for _, s := range []string{"001a2b3c4d5e", "001A2B3C4D5E", "00:1a:2b:3c:4d:5e", "001a:2b3c:4d5e",
		"00:1a:2b:3c:4d:5e:", "00-1a-2b-3c-4d-5e", "001a.2b3c.4d5e"} {
		got, err := parseMAC(s)
		if err != nil || got != want {
			t.Errorf("parseMAC(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "001a2b3c4d", "001a2b3c4d5e6f", "0:1a:2b:3c:4d:5e", "001a2b3c4d5g", "+01a2b3c4d5e", "00::1a2b3c4d5e"} {
		if got, err := parseMAC(s); err == nil {
			t.Errorf("parseMAC(%q) = %v, want an error", s, got)
		}
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{"001a2b3c4d5e", "00:1a:2b:3c:4d:5e", "001a:2b3c:4d5e", "00-1a-2b-3c-4d-5e", "zz", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseMAC(s)
		if err != nil {
			return
		}
		// Whatever parsed must survive a round trip through both forms.
		for _, form := range []string{m.String(), strings.ReplaceAll(m.String(), ":", "")} {
			if back, err := parseMAC(form); err != nil || back != m {
				t.Fatalf("parseMAC(%q) = %v, but parseMAC(%q) = %v, %v", s, m, form, back, err)
			}
		}
	})
}

func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{
		"1 2 eth0 disk.img",
		"-rs -b8 -o 0x10 -l 010 -m 102233445566,aa:bb:cc:dd:ee:ff 1 2 eth0 disk.img",
		"14 2 ens3 /dev/x -r -m 11:22:33:44:55:66 -o 8",
		"--sync --state-dir /tmp --workers 3 -- 1 2 eth0 -f",
		"--s -x --help",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		o, err := parseArgs(append([]string{"ironblade"}, strings.Fields(line)...), noEnv, &bytes.Buffer{})
		if err != nil {
			return
		}
		if o.Shelf > maxShelf || o.Slot > maxSlot || o.Buffers < minBuffers || o.Buffers > maxBuffers ||
			o.Offset < 0 || o.Length < 0 || o.Netif == "" || o.Filename == "" || o.Workers < 0 {
			t.Fatalf("parseArgs(%q) accepted invalid options %+v", line, o)
		}
	})
}

// TestConfigBusyPoll checks that --busy-poll, a process option, is taken
// with --config and applies to every export.
func TestConfigBusyPoll(t *testing.T) {
	for _, tc := range []struct {
		args string
		want time.Duration
	}{
		{"--config x.conf", defaultBusyPoll},
		{"--config x.conf --busy-poll 0", 0},
		{"--busy-poll=200us --config x.conf", 200 * time.Microsecond},
	} {
		got, err := parseArgs(append([]string{"ironblade"}, strings.Fields(tc.args)...), noEnv, &bytes.Buffer{})
		if err != nil {
			t.Fatalf("parseArgs(%q): %v", tc.args, err)
		}
		if got.ConfigFile != "x.conf" || got.BusyPoll != tc.want {
			t.Errorf("parseArgs(%q): config %q, busy poll %v; want x.conf, %v", tc.args, got.ConfigFile, got.BusyPoll, tc.want)
		}
	}
}
