package bladectl

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestControlCheck(t *testing.T) {
	ok := []struct {
		in, want Request
	}{
		{Request{V: 1, Verb: "list"}, Request{V: 1, Verb: "list"}},
		{Request{V: 1, Verb: "stat", Target: "1.0"}, Request{V: 1, Verb: "stat", Target: "e1.0"}},
		{Request{V: 1, Verb: "config"}, Request{V: 1, Verb: "config", Op: "get"}},
		{Request{V: 1, Verb: "config", Op: "set", Target: "e01.2", String: "a", Force: true},
			Request{V: 1, Verb: "config", Op: "set", Target: "e1.2", String: "a", Force: true}},
		{Request{V: 1, Verb: "config", Op: "clear", Target: "e1.2"}, Request{V: 1, Verb: "config", Op: "clear", Target: "e1.2"}},
		{Request{V: 1, Verb: "mask", Target: "e1.2"}, Request{V: 1, Verb: "mask", Op: "list", Target: "e1.2"}},
		{Request{V: 1, Verb: "mask", Op: "add", Target: "e1.2", MACs: []string{"0025900A1B2C", "00-25-90-0a-1b-2d"}},
			Request{V: 1, Verb: "mask", Op: "add", Target: "e1.2", MACs: []string{"00:25:90:0a:1b:2c", "00:25:90:0a:1b:2d"}}},
		{Request{V: 1, Verb: "reserve", Op: "set", Target: "e65534.254", MACs: []string{"02:00:00:00:00:01"}},
			Request{V: 1, Verb: "reserve", Op: "set", Target: "e65534.254", MACs: []string{"02:00:00:00:00:01"}}},
		{Request{V: 1, Verb: "reserve", Op: "clear", Target: "e1.2"}, Request{V: 1, Verb: "reserve", Op: "clear", Target: "e1.2"}},
	}
	for _, tt := range ok {
		got := tt.in
		if err := got.Check(); err != nil {
			t.Errorf("Check(%+v): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Check(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	bad := []struct {
		req  Request
		want string
	}{
		{Request{V: 2, Verb: "list"}, "protocol version 2"},
		{Request{V: 1, Verb: "frob"}, "unknown verb"},
		{Request{V: 1, Verb: "config", Op: "add"}, "unknown op"},
		{Request{V: 1, Verb: "config", Op: "set", String: "x"}, "which export"},
		{Request{V: 1, Verb: "reserve", Op: "clear"}, "which export"},
		{Request{V: 1, Verb: "list", Target: "e65535.0"}, "want eSHELF.SLOT"},
		{Request{V: 1, Verb: "list", Target: "e1.255"}, "want eSHELF.SLOT"},
		{Request{V: 1, Verb: "list", Target: "e1"}, "want eSHELF.SLOT"},
		{Request{V: 1, Verb: "config", Op: "set", Target: "e1.0", String: strings.Repeat("x", 1025)}, "at most 1024"},
		{Request{V: 1, Verb: "reserve", Op: "clear", Target: "e1.0", Force: true}, "force is for config set"},
		{Request{V: 1, Verb: "mask", Op: "add", Target: "e1.0"}, "which MAC"},
		{Request{V: 1, Verb: "mask", Op: "clear", Target: "e1.0", MACs: []string{"020000000001"}}, "takes no MAC"},
		{Request{V: 1, Verb: "reserve", Op: "set", Target: "e1.0", MACs: []string{"nonsense"}}, "bad MAC address"},
	}
	for _, tt := range bad {
		req := tt.req
		err := req.Check()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Check(%+v) = %v, want an error with %q", tt.req, err, tt.want)
		}
	}
}

// TestControlCodec: messages survive a round trip, one per line, and
// what is not one message is refused.
func TestControlCodec(t *testing.T) {
	stats := &Stats{FramesIn: 3, Dropped: map[string]uint64{"mac_mask": 1}, Errors: map[string]uint64{}}
	resp := Response{V: 1, Error: "x", Code: CodeFailed, Exports: []Export{{Target: "e1.0", Shelf: 1, File: "/a", Interfaces: []string{"eth0"},
		State: "serving", Sync: true, Size: 512, Paths: []Path{{Netif: "eth0", State: "serving", ConfigString: "c\n\"q\"",
			MACMask: []string{}, Reserve: []string{"02:00:00:00:00:01"}, Stats: stats}}}}}
	var b strings.Builder
	for range 2 {
		if err := WriteMessage(&b, resp); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(b.String(), "\n"); n != 2 {
		t.Fatalf("%d lines for 2 messages:\n%s", n, b.String())
	}
	r := bufio.NewReader(strings.NewReader(b.String()))
	for range 2 {
		var got Response
		if err := ReadMessage(r, &got); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, resp) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, resp)
		}
	}
	var end Response
	if err := ReadMessage(r, &end); !errors.Is(err, io.EOF) {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
	for _, in := range []string{
		`{"v":1,"verb":"list"`,               // cut short
		`{"v":1,"verb":"list","x":1}` + "\n", // unknown field
		`{"v":1} {"v":1}` + "\n",             // two values
		`nonsense` + "\n",
		strings.Repeat(" ", MaxLine+1) + "\n",
	} {
		var req Request
		if err := ReadMessage(bufio.NewReader(strings.NewReader(in)), &req); err == nil || errors.Is(err, io.EOF) {
			t.Errorf("ReadMessage(%.40q) = %v, want an error", in, err)
		}
	}
}

// TestControlSocket: a request goes through the socket to the handler
// and back; a bad line is answered with an error; a stale socket file is
// replaced, a live one is not; Close removes the file.
func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "ctl.sock")
	handle := func(req Request) Response {
		return Response{Exports: []Export{{Target: req.Target, State: req.Verb}}}
	}
	// A stale socket: bound, then its listener gone without unlinking.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	stale.SetUnlinkOnClose(false)
	stale.Close()
	if _, err := Call(context.Background(), path, Request{Verb: "list"}); !errors.Is(err, ErrStale) {
		t.Fatalf("Call on a stale socket: %v, want ErrStale", err)
	}
	srv, err := Listen(path, handle, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi.Mode(), err)
	}
	if _, err := Listen(path, handle, slog.New(slog.DiscardHandler)); !errors.Is(err, ErrInUse) {
		t.Fatalf("Listen over a live socket: %v, want ErrInUse", err)
	}
	resp, err := Call(context.Background(), path, Request{Verb: "stat", Target: "1.2"})
	if err != nil || resp.Error != "" || len(resp.Exports) != 1 || resp.Exports[0].Target != "e1.2" || resp.Exports[0].State != "stat" {
		t.Fatalf("Call = %+v, %v", resp, err)
	}
	resp, err = Call(context.Background(), path, Request{Verb: "frob"})
	if err != nil || !strings.Contains(resp.Error, "unknown verb") || resp.Code != CodeBadRequest || resp.Exports == nil {
		t.Fatalf("Call(frob) = %+v, %v", resp, err)
	}
	// A raw connection: several requests, then a line that is not one.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, `{"v":1,"verb":"list"}`+"\n"+`{"v":1,"verb":"list","target":"e3.4"}`+"\n"+"junk\n")
	dec := json.NewDecoder(conn)
	for i, want := range []string{"", "", "control: decode"} {
		var got Response
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
		if got.V != Version || !strings.HasPrefix(got.Error, want) {
			t.Errorf("answer %d = %+v, want error %q", i, got, want)
		}
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, handle, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a regular file: %v", err)
	}
}
