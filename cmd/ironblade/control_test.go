package main

import (
	"bytes"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/bladectl"
	"github.com/ironblade/ironblade/target"
)

// TestControlFlag: --control is long-only, PATH or off (or empty) for
// none, and allowed beside --config.
func TestControlFlag(t *testing.T) {
	for _, tt := range []struct {
		args, want string
	}{
		{"1 2 eth0 disk.img", ""},
		{"--control /tmp/x.sock 1 2 eth0 disk.img", "/tmp/x.sock"},
		{"1 2 eth0 disk.img --control=off", controlOff},
		{"--control= 1 2 eth0 disk.img", controlOff},
		{"--config /etc/ironblade.conf --control /tmp/y.sock", "/tmp/y.sock"},
	} {
		o, err := parseArgs(append([]string{"ironblade"}, strings.Fields(tt.args)...), noEnv, &bytes.Buffer{})
		if err != nil {
			t.Errorf("parseArgs(%q): %v", tt.args, err)
			continue
		}
		if o.Control != tt.want {
			t.Errorf("parseArgs(%q).Control = %q, want %q", tt.args, o.Control, tt.want)
		}
	}
}

func TestControlPath(t *testing.T) {
	for _, tt := range []struct {
		o        options
		dir      string
		want     string
		explicit bool
	}{
		{options{Shelf: 1, Slot: 2, Netif: "eth0"}, "/run/ironblade", "/run/ironblade/e1.2-eth0.sock", false},
		{options{ConfigFile: "/etc/c"}, "/run/ironblade", "/run/ironblade/ctl.sock", false},
		{options{Shelf: 1, Slot: 2, Netif: "eth0"}, "", "", false},
		{options{Control: "/x.sock"}, "", "/x.sock", true},
		{options{Control: controlOff}, "/run/ironblade", "", false},
	} {
		got, explicit := controlPath(tt.o, tt.dir)
		if got != tt.want || explicit != tt.explicit {
			t.Errorf("controlPath(%+v, %q) = %q, %v; want %q, %v", tt.o, tt.dir, got, explicit, tt.want, tt.explicit)
		}
	}
}

// TestControlHandle: requests reach every target of the export named
// (one per interface) and only those; the answer shows the result.
func TestControlHandle(t *testing.T) {
	newServer := func(slot uint8) *target.Server {
		srv, err := target.NewServer(target.Config{Shelf: 1, Slot: slot, Backend: aoetest.NewMemDisk(1 << 20), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return srv
	}
	a0, a1, b := newServer(0), newServer(0), newServer(1)
	exports := []controlExport{
		{info: bladectl.Export{Target: "e1.0", Shelf: 1, Interfaces: []string{"eth0", "eth1"}}, servers: []*target.Server{a0, a1}},
		{info: bladectl.Export{Target: "e1.1", Shelf: 1, Slot: 1, Interfaces: []string{"eth0"}}, servers: []*target.Server{b},
			failed: func() bool { return true }},
	}
	c := controller{exports: func() []controlExport { return exports }, log: slog.New(slog.DiscardHandler)}
	do := func(req bladectl.Request) bladectl.Response {
		t.Helper()
		req.V = bladectl.Version
		if err := req.Check(); err != nil {
			t.Fatal(err)
		}
		return c.handle(req)
	}
	mac := aoe.MAC{2, 0, 0, 0, 0, 9}
	resp := do(bladectl.Request{Verb: "reserve", Op: "set", Target: "e1.0", MACs: []string{mac.String()}})
	if resp.Error != "" || len(resp.Exports) != 1 || len(resp.Exports[0].Paths) != 2 {
		t.Fatalf("reserve set: %+v", resp)
	}
	for _, srv := range []*target.Server{a0, a1} {
		if !slices.Equal(srv.Reserve(), []aoe.MAC{mac}) {
			t.Errorf("reserve of a path: %v", srv.Reserve())
		}
	}
	if len(b.Reserve()) != 0 {
		t.Errorf("the other export was reserved too: %v", b.Reserve())
	}
	resp = do(bladectl.Request{Verb: "list"})
	if len(resp.Exports) != 2 || resp.Exports[0].State != "starting" || resp.Exports[1].State != "failed" ||
		resp.Exports[1].Paths[0].State != "failed" || resp.Exports[0].Paths[1].Stats != nil {
		t.Errorf("list: %+v", resp)
	}
	if resp = do(bladectl.Request{Verb: "stat", Target: "e1.1"}); len(resp.Exports) != 1 || resp.Exports[0].Paths[0].Stats == nil {
		t.Errorf("stat: %+v", resp)
	}
	do(bladectl.Request{Verb: "config", Op: "set", Target: "e1.1", String: "a"})
	resp = do(bladectl.Request{Verb: "config", Op: "set", Target: "e1.1", String: "b"})
	if resp.Code != bladectl.CodeFailed || !strings.Contains(resp.Error, "--force") || resp.Exports[0].Paths[0].ConfigString != "a" {
		t.Errorf("config set over another string: %+v", resp)
	}
	if resp = do(bladectl.Request{Verb: "mask", Op: "clear", Target: "e7.7"}); resp.Code != bladectl.CodeNoExport {
		t.Errorf("an export not served: %+v", resp)
	}
}

// TestControlDir: systemd's runtime directory, when it made one, holds the
// default socket; else /run/ironblade.
func TestControlDir(t *testing.T) {
	for env, want := range map[string]string{"": defaultControlDir, "/run/x": "/run/x", "/run/x:/run/y": "/run/x"} {
		if got := controlDir(func(string) string { return env }); got != want {
			t.Errorf("RUNTIME_DIRECTORY=%q: %q, want %q", env, got, want)
		}
	}
}
