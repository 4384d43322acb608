package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
)

// The test backends must offer what the server looks for.
var (
	_ Backend          = (*nbdtest.Memory)(nil)
	_ ZeroWriter       = (*nbdtest.Memory)(nil)
	_ Trimmer          = (*nbdtest.Memory)(nil)
	_ ReadOnlyBackend  = (*nbdtest.Memory)(nil)
	_ MultiConnBackend = (*nbdtest.Memory)(nil)
	_ Trimmer          = (*nbdtest.File)(nil)
	_ ReadOnlyBackend  = (*nbdtest.File)(nil)
)

// plainBackend hides every optional capability of a backend.
type plainBackend struct{ Backend }

// testLog is an slog handler writing to t.Log until the test ends.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(string(p))
	}
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// socketPath returns a short Unix socket path (they are limited to 108
// bytes) removed when the test ends.
func socketPath(t testing.TB) string {
	dir, err := os.MkdirTemp("", "nbd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s")
}

// serve runs srv on l until the test ends or the returned function, which
// cancels Serve's context and waits for it to return, is called.
func serve(t testing.TB, srv *Server, l net.Listener) (stop func()) {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancellation")
		}
	})
	t.Cleanup(stop)
	return stop
}

// serveUnix runs srv on a fresh Unix socket and returns its path.
func serveUnix(t testing.TB, srv *Server) string {
	t.Helper()
	path := socketPath(t)
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, srv, l)
	return path
}

// newMemoryServer serves one 16 MiB memory export named "mem".
func newMemoryServer(t testing.TB) (*nbdtest.Memory, string) {
	mem := nbdtest.NewMemory(16 << 20)
	var ex ExportMap
	ex.Add("mem", "a memory disk", mem)
	return mem, serveUnix(t, &Server{Exports: &ex})
}

// dialClient connects a Client to a Unix socket.
func dialClient(t testing.TB, path string, cfg ClientConfig) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, "unix", path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn speaks the protocol byte by byte, for tests that need to break it.
type rawConn struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t testing.TB, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) send(b ...[]byte) {
	r.t.Helper()
	for _, p := range b {
		if len(p) == 0 {
			continue
		}
		if _, err := r.c.Write(p); err != nil {
			r.t.Fatalf("write: %v", err)
		}
	}
}

func (r *rawConn) recv(n int) []byte {
	r.t.Helper()
	p := make([]byte, n)
	if _, err := io.ReadFull(r.br, p); err != nil {
		r.t.Fatalf("read %d bytes: %v", n, err)
	}
	return p
}

// greet reads the greeting and sends the client flags.
func (r *rawConn) greet(clientFlags uint32) {
	r.t.Helper()
	g := r.recv(18)
	if binary.BigEndian.Uint64(g) != magicInit || binary.BigEndian.Uint64(g[8:]) != magicOption {
		r.t.Fatalf("bad greeting % x", g)
	}
	if f := binary.BigEndian.Uint16(g[16:]); f != handshakeFixedNewstyle|handshakeNoZeroes {
		r.t.Fatalf("handshake flags %#x", f)
	}
	r.send(be32(clientFlags))
}

func (r *rawConn) option(opt uint32, data []byte) {
	r.t.Helper()
	r.send(be64(magicOption), be32(opt), be32(uint32(len(data))), data)
}

// optionReply reads one option reply and checks it answers opt.
func (r *rawConn) optionReply(opt uint32) (typ uint32, data []byte) {
	r.t.Helper()
	h := r.recv(optionReplyLen)
	if m := binary.BigEndian.Uint64(h); m != magicOptionReply {
		r.t.Fatalf("option reply magic %#x", m)
	}
	if o := binary.BigEndian.Uint32(h[8:]); o != opt {
		r.t.Fatalf("reply to option %d, want %d", o, opt)
	}
	return binary.BigEndian.Uint32(h[12:]), r.recv(int(binary.BigEndian.Uint32(h[16:])))
}

// goOption builds the data of NBD_OPT_GO / NBD_OPT_INFO.
func goOption(name string, infos ...uint16) []byte {
	d := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	d = append(d, name...)
	d = binary.BigEndian.AppendUint16(d, uint16(len(infos)))
	for _, i := range infos {
		d = binary.BigEndian.AppendUint16(d, i)
	}
	return d
}

// goInto negotiates GO on the export and returns its size and flags.
func (r *rawConn) goInto(name string) (uint64, uint16) {
	r.t.Helper()
	r.option(optGo, goOption(name))
	var size uint64
	var flags uint16
	for {
		typ, data := r.optionReply(optGo)
		switch typ {
		case repAck:
			return size, flags
		case repInfo:
			if binary.BigEndian.Uint16(data) == infoExport {
				size, flags = binary.BigEndian.Uint64(data[2:]), binary.BigEndian.Uint16(data[10:])
			}
		default:
			r.t.Fatalf("GO reply %#x %q", typ, data)
		}
	}
}

func (r *rawConn) request(flags, typ uint16, cookie, off uint64, length uint32, payload []byte) {
	r.t.Helper()
	h := make([]byte, requestLen)
	binary.BigEndian.PutUint32(h, magicRequest)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	r.send(h, payload)
}

// simpleReply reads a simple reply header.
func (r *rawConn) simpleReply() (errno Errno, cookie uint64) {
	r.t.Helper()
	h := r.recv(simpleReplyLen)
	if m := binary.BigEndian.Uint32(h); m != magicSimpleReply {
		r.t.Fatalf("reply magic %#x", m)
	}
	return Errno(binary.BigEndian.Uint32(h[4:])), binary.BigEndian.Uint64(h[8:])
}

// expectClosed checks that the server closes the connection soon.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := io.Copy(io.Discard, r.br)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		r.t.Fatalf("connection still open after %d more bytes", n)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }

func contextWithTimeout(t testing.TB, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
