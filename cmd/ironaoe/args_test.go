package main

import (
	"bytes"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator"
	"github.com/ironblade/ironblade/initiator/nbdkernel"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// defaultEngine is engineOptions with every default.
func defaultEngine() engineOptions {
	return engineOptions{Config: initiator.Config{
		DiscoverInterval: initiator.DefaultDiscoverInterval,
		ScornTimeout:     initiator.DefaultScornTimeout,
		RTOMin:           initiator.DefaultRTOMin,
		RTOMax:           initiator.DefaultRTOMax,
		DeadTimeout:      initiator.DefaultDeadTimeout,
		MaxWindow:        initiator.DefaultMaxWindow,
		Policy:           initiator.PolicyFailover,
	}}
}

func TestParseArgs(t *testing.T) {
	defaultGlobal := globalOptions{LogLevel: slog.LevelInfo, LogFormat: "text"}
	withEngine := func(f func(*engineOptions)) engineOptions {
		e := defaultEngine()
		f(&e)
		return e
	}
	tests := []struct {
		name string
		args []string
		want invocation // compared when wantErr is empty
		// wantErr is a substring of the expected error.
		wantErr string
	}{
		{
			name: "discover defaults",
			args: []string{"discover"},
			want: invocation{Command: "discover", Global: defaultGlobal,
				Discover: discoverOptions{Engine: defaultEngine(), Wait: defaultDiscoverWait}},
		},
		{
			name: "discover with interfaces, json and wait",
			args: []string{"discover", "-i", "eth0", "--interface", "eth1,eth2", "--json", "--wait", "3s"},
			want: invocation{Command: "discover", Global: defaultGlobal,
				Discover: discoverOptions{
					Engine: withEngine(func(e *engineOptions) { e.Interfaces = []string{"eth0", "eth1", "eth2"} }),
					JSON:   true, Wait: 3 * time.Second,
				}},
		},
		{
			name: "global options after the command",
			args: []string{"discover", "--log-level", "debug", "--log-format=json"},
			want: invocation{Command: "discover",
				Global:   globalOptions{LogLevel: slog.LevelDebug, LogLevelSet: true, LogFormat: "json"},
				Discover: discoverOptions{Engine: defaultEngine(), Wait: defaultDiscoverWait}},
		},
		{
			name: "global options before the command",
			args: []string{"--log-level=warn", "discover"},
			want: invocation{Command: "discover",
				Global:   globalOptions{LogLevel: slog.LevelWarn, LogLevelSet: true, LogFormat: "text"},
				Discover: discoverOptions{Engine: defaultEngine(), Wait: defaultDiscoverWait}},
		},
		{
			name: "serve defaults to loopback TCP",
			args: []string{"serve"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{Engine: defaultEngine(), TCP: defaultTCP, ControlDir: defaultControlDir}},
		},
		{
			name: "serve options after operands, tunables",
			args: []string{"serve", "e1.0", "e2.3", "--unix", "/run/x.sock", "-i", "eth0", "--tcp", "[::1]:10809",
				"--scorn-timeout", "2s", "--rto-min", "1ms", "--rto-max", "500ms", "--discover-interval", "10s",
				"--dead-timeout", "0", "--max-window", "8", "--policy", "multipath", "--control-dir", "", "--vlan", "42"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{
					Engine: engineOptions{Interfaces: []string{"eth0"}, VLAN: 42, Config: initiator.Config{
						ScornTimeout: 2 * time.Second, RTOMin: time.Millisecond, RTOMax: 500 * time.Millisecond,
						DiscoverInterval: 10 * time.Second, DeadTimeout: -1, MaxWindow: 8, Policy: initiator.PolicyMultipath,
					}},
					Unix: "/run/x.sock", TCP: "[::1]:10809",
					Devices: []deviceAddr{{1, 0}, {2, 3}},
				}},
		},
		{
			name: "serve unix only",
			args: []string{"serve", "--unix", "/tmp/s"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{Engine: defaultEngine(), Unix: "/tmp/s", ControlDir: defaultControlDir}},
		},
		{
			name: "serve on any address with --tcp-any",
			args: []string{"serve", "--tcp", ":10809", "--tcp-any"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{Engine: defaultEngine(), TCP: ":10809", TCPAny: true, ControlDir: defaultControlDir}},
		},
		{name: "serve refuses a non-loopback address", args: []string{"serve", "--tcp", "0.0.0.0:10809"}, wantErr: "--tcp-any"},
		{name: "serve refuses all addresses", args: []string{"serve", "--tcp", ":10809"}, wantErr: "not a loopback address"},
		{name: "serve bad tcp address", args: []string{"serve", "--tcp", "localhost"}, wantErr: "want HOST:PORT"},
		{name: "serve empty unix path", args: []string{"serve", "--unix", ""}, wantErr: "empty socket path"},
		{name: "serve bad device", args: []string{"serve", "e1"}, wantErr: `device "e1"`},
		{name: "serve duplicate device", args: []string{"serve", "e1.0", "1.0"}, wantErr: "named twice"},
		{
			name: "operands after --",
			args: []string{"serve", "--unix", "/s", "--", "e1.0"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{Engine: defaultEngine(), Unix: "/s", Devices: []deviceAddr{{1, 0}}, ControlDir: defaultControlDir}},
		},
		{
			name: "attach with device node",
			args: []string{"attach", "e7.1", "/dev/nbd3", "-i", "eth0", "--block-size", "4096", "--connections", "2", "--wait", "0"},
			want: invocation{Command: "attach", Global: defaultGlobal,
				Attach: attachOptions{
					Engine: withEngine(func(e *engineOptions) { e.Interfaces = []string{"eth0"} }),
					Device: deviceAddr{7, 1}, Index: 3, BlockSize: 4096, Connections: 2, ControlDir: defaultControlDir,
				}},
		},
		{
			name: "attach any device node",
			args: []string{"attach", "e0.0"},
			want: invocation{Command: "attach", Global: defaultGlobal,
				Attach: attachOptions{Engine: defaultEngine(), Device: deviceAddr{0, 0}, Index: nbdkernel.AnyIndex,
					BlockSize: 512, Connections: 1, Wait: defaultAttachWait, ControlDir: defaultControlDir}},
		},
		{
			name: "attach with metrics and json",
			args: []string{"attach", "e1.2", "--json", "--metrics", "127.0.0.1:9193"},
			want: invocation{Command: "attach", Global: defaultGlobal,
				Attach: attachOptions{Engine: defaultEngine(), Device: deviceAddr{1, 2}, Index: nbdkernel.AnyIndex,
					BlockSize: 512, Connections: 1, Wait: defaultAttachWait, ControlDir: defaultControlDir,
					Metrics: "127.0.0.1:9193", JSON: true}},
		},
		{
			name: "serve with metrics",
			args: []string{"serve", "--metrics", "[::1]:0", "--unix", "/s"},
			want: invocation{Command: "serve", Global: defaultGlobal,
				Serve: serveOptions{Engine: defaultEngine(), Unix: "/s", ControlDir: defaultControlDir, Metrics: "[::1]:0"}},
		},
		{name: "serve bad metrics address", args: []string{"serve", "--metrics", "9193"}, wantErr: `--metrics "9193": want host:port`},
		{name: "attach metrics without value", args: []string{"attach", "e1.0", "--metrics"}, wantErr: "metrics"},
		{name: "attach without device", args: []string{"attach"}, wantErr: "want a device"},
		{name: "attach bad node", args: []string{"attach", "e1.0", "/dev/sda"}, wantErr: "not an nbd device"},
		{name: "attach partition", args: []string{"attach", "e1.0", "/dev/nbd0p1"}, wantErr: "partition"},
		{name: "attach bad block size", args: []string{"attach", "e1.0", "--block-size", "1000"}, wantErr: "--block-size 1000"},
		{name: "attach too many connections", args: []string{"attach", "e1.0", "--connections", "65"}, wantErr: "--connections 65"},
		{name: "attach broadcast shelf", args: []string{"attach", "e65535.0"}, wantErr: "out of range"},
		{
			name: "detach",
			args: []string{"detach", "/dev/nbd12"},
			want: invocation{Command: "detach", Global: defaultGlobal, Detach: detachOptions{Index: 12}},
		},
		{name: "detach nothing", args: []string{"detach"}, wantErr: "want one device"},
		{name: "detach bad", args: []string{"detach", "nbdx"}, wantErr: "not an nbd device"},
		{
			name: "stat",
			args: []string{"stat", "--json", "--control", "/run/ironaoe/1.sock"},
			want: invocation{Command: "stat", Global: defaultGlobal,
				Stat: statOptions{JSON: true, Control: "/run/ironaoe/1.sock", ControlDir: defaultControlDir}},
		},
		{name: "stat operand", args: []string{"stat", "e1.0"}, wantErr: "unexpected operand"},
		{name: "no command", args: nil, wantErr: "no command given"},
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "unknown flag", args: []string{"discover", "--frob"}, wantErr: "frob"},
		{name: "bad log level", args: []string{"stat", "--log-level", "loud"}, wantErr: "--log-level"},
		{name: "bad log format", args: []string{"stat", "--log-format", "xml"}, wantErr: "--log-format"},
		{name: "bad policy", args: []string{"discover", "--policy", "random"}, wantErr: "--policy"},
		{name: "VLAN out of range", args: []string{"discover", "--vlan", "4095"}, wantErr: "--vlan"},
		{name: "zero scorn timeout", args: []string{"discover", "--scorn-timeout", "0"}, wantErr: "--scorn-timeout"},
		{name: "rto min above max", args: []string{"discover", "--rto-min", "2s"}, wantErr: "above --rto-max"},
		{name: "negative dead timeout", args: []string{"discover", "--dead-timeout", "-1s"}, wantErr: "--dead-timeout"},
		{name: "zero window", args: []string{"discover", "--max-window", "0"}, wantErr: "--max-window"},
		{name: "bad duration", args: []string{"discover", "--wait", "soon"}, wantErr: "wait"},
		{name: "empty interface", args: []string{"discover", "-i", ""}, wantErr: "empty interface"},
		{name: "discover operand", args: []string{"discover", "e1.0"}, wantErr: "unexpected operand"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(append([]string{"ironaoe"}, tc.args...), &bytes.Buffer{})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseArgs(%q) error %v, want one containing %q", tc.args, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseArgs(%q)\n got %+v\nwant %+v", tc.args, got, tc.want)
			}
		})
	}
}

func TestParseArgsHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"}, {"--version"},
		{"serve", "--help"}, {"attach", "e1.0", "--help"}, {"help", "discover"}, {"--log-level", "debug", "stat", "-h"},
	} {
		var out bytes.Buffer
		_, err := parseArgs(append([]string{"ironaoe"}, args...), &out)
		if !errors.Is(err, errHelpShown) {
			t.Errorf("parseArgs(%q): %v, want errHelpShown", args, err)
		}
		if out.Len() == 0 {
			t.Errorf("parseArgs(%q) printed nothing", args)
		}
	}
}

func TestPermuteArgs(t *testing.T) {
	app := newApp(&bytes.Buffer{}, &bytes.Buffer{}, nil)
	tests := []struct{ in, want []string }{
		{[]string{"serve", "e1.0", "-i", "eth0"}, []string{"serve", "--interface", "eth0", "--", "e1.0"}},
		{[]string{"serve", "e1.0", "--log-level", "debug", "--unix=/s"}, []string{"--log-level", "debug", "serve", "--unix=/s", "--", "e1.0"}},
		{[]string{"--log-format", "json", "stat"}, []string{"--log-format", "json", "stat"}},
		{[]string{"attach", "-wait=5s", "e1.0", "--", "-x"}, []string{"attach", "--wait=5s", "--", "e1.0", "-x"}},
		{[]string{"attach", "e1.0", "-h", "-i", "x"}, []string{"attach", "--help"}},
		{[]string{"stat", "--frob", "x"}, []string{"stat", "--frob", "--", "x"}},
		{[]string{"bogus", "-i", "x"}, []string{"bogus", "-i", "x"}},
		{[]string{"--", "serve"}, []string{"--", "serve"}},
		{[]string{"serve", "--unix"}, []string{"serve", "--unix"}}, // missing value: left for the library
	}
	for _, tc := range tests {
		if got := cliflag.Permute(app, tc.in); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Permute(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestRunExitStatus checks the exit status and message of command lines
// that fail before touching the network.
func TestRunExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		status  int
		wantErr string
	}{
		{[]string{"--version"}, exitOK, ""},
		{[]string{"serve", "--tcp", "0.0.0.0:1"}, exitUsage, "--tcp-any"},
		{[]string{}, exitUsage, "no command given"},
		{[]string{"stat", "--control-dir", t.TempDir()}, exitOK, ""},
		{[]string{"stat", "--control", "/nonexistent/ironaoe.sock"}, exitFailure, "control socket /nonexistent/ironaoe.sock"},
		{[]string{"discover", "-i", "no-such-interface0"}, exitFailure, "interface no-such-interface0"},
	} {
		var stdout, stderr bytes.Buffer
		status := run(append([]string{"ironaoe"}, tc.args...), &stdout, &stderr)
		if status != tc.status || !strings.Contains(stderr.String(), tc.wantErr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tc.args, status, stderr.String(), tc.status, tc.wantErr)
		}
	}
}
