package main

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/internal/bladectl"
	"github.com/ironblade/ironblade/internal/cliflag"
)

// TestCtlParseArgs: every verb's command line becomes its request, with
// options anywhere.
func TestCtlParseArgs(t *testing.T) {
	req := func(verb, op, target string, macs ...string) bladectl.Request {
		return bladectl.Request{V: 1, Verb: verb, Op: op, Target: target, MACs: macs}
	}
	tests := []struct {
		args string
		want invocation
	}{
		{"list", invocation{Request: req("list", "", "")}},
		{"list e1.0 --json", invocation{Request: req("list", "", "e1.0"), JSON: true}},
		{"--control /x.sock stat 1.2", invocation{Request: req("stat", "", "e1.2"), Control: "/x.sock"}},
		{"stat --control=/x.sock --json", invocation{Request: req("stat", "", ""), Control: "/x.sock", JSON: true}},
		{"config get", invocation{Request: req("config", "get", "")}},
		{"config set e1.0 host-a --force --json", invocation{
			Request: bladectl.Request{V: 1, Verb: "config", Op: "set", Target: "e1.0", String: "host-a", Force: true}, JSON: true}},
		{"config set e1.0 -- --dash", invocation{Request: bladectl.Request{V: 1, Verb: "config", Op: "set", Target: "e1.0", String: "--dash"}}},
		{"config clear e1.0", invocation{Request: req("config", "clear", "e1.0")}},
		{"mask list e1.0", invocation{Request: req("mask", "list", "e1.0")}},
		{"mask add e1.0 001122334455 00:11:22:33:44:56", invocation{Request: req("mask", "add", "e1.0", "00:11:22:33:44:55", "00:11:22:33:44:56")}},
		{"mask remove e1.0 001122334455", invocation{Request: req("mask", "remove", "e1.0", "00:11:22:33:44:55")}},
		{"mask clear e1.0", invocation{Request: req("mask", "clear", "e1.0")}},
		{"reserve list", invocation{Request: req("reserve", "list", "")}},
		{"reserve set e1.0 001122334455", invocation{Request: req("reserve", "set", "e1.0", "00:11:22:33:44:55")}},
		{"reserve clear e1.0 --control-dir /d", invocation{Request: req("reserve", "clear", "e1.0"), ControlDir: "/d"}},
	}
	for _, tt := range tests {
		got, err := parseArgs(append([]string{"ironbladectl"}, strings.Fields(tt.args)...), &bytes.Buffer{})
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tt.args, err)
			continue
		}
		if tt.want.ControlDir == "" {
			tt.want.ControlDir = defaultControlDir
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseArgs(%q)\n got %+v\nwant %+v", tt.args, got, tt.want)
		}
	}
}

// TestCtlParseArgsRejects: mistakes are usage errors (exit 2) that say
// what is wrong.
func TestCtlParseArgsRejects(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"", "no command given"},
		{"frob", "unknown command"},
		{"config", "which operation"},
		{"config frob e1.0", "unknown operation"},
		{"config set e1.0", "want eSHELF.SLOT STRING"},
		{"config set", "want eSHELF.SLOT STRING"},
		{"config clear", "which export"},
		{"config clear e1.0 --force", "only with config set"},
		{"mask add e1.0", "which MAC"},
		{"mask add e1.0 nonsense", "bad MAC address"},
		{"mask clear e1.0 001122334455", "mask clear: too many operands, from \"001122334455\" on"},
		{"reserve set", "which export"},
		{"list e1.0 e1.1", "list: too many operands"},
		{"list e99999.0", "eSHELF.SLOT"},
		{"list --frob", "unknown option --frob"},
		{"--control-dir= list", "empty directory name"},
	} {
		_, err := parseArgs(append([]string{"ironbladectl"}, strings.Fields(tt.args)...), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("parseArgs(%q) = %v, want an error with %q", tt.args, err, tt.want)
		}
		var stdout, stderr bytes.Buffer
		if code := run(append([]string{"ironbladectl"}, strings.Fields(tt.args)...), &stdout, &stderr); code != cliflag.ExitUsage {
			t.Errorf("run(%q) = %d, want %d", tt.args, code, cliflag.ExitUsage)
		}
	}
}

// TestCtlNoSocket: with nothing to ask, the command fails (exit 1) and
// says why.
func TestCtlNoSocket(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"ironbladectl", "--control-dir", t.TempDir(), "list"}, &stdout, &stderr)
	if code != cliflag.ExitFailure || !strings.Contains(stderr.String(), "no control socket") {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	_, err := sockets(invocation{ControlDir: t.TempDir() + "/missing"})
	if err == nil || errors.Is(err, errHelpShown) {
		t.Fatalf("sockets in a missing directory: %v", err)
	}
}

func TestCtlSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1 << 20: "1.0MiB", 3 << 29: "1.5GiB"} {
		if got := size(n); got != want {
			t.Errorf("size(%d) = %q, want %q", n, got, want)
		}
	}
}
