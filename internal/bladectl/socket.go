package bladectl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Timeout bounds one request on either side, so that a wedged peer hangs
// neither ironbladectl nor a connection of ironblade.
const Timeout = 10 * time.Second

// ErrStale is wrapped by Call when nothing listens on the socket any
// more: its process died without removing it.
var ErrStale = errors.New("stale control socket: no process listens on it")

// ErrInUse is returned by Listen when a live process listens on the path.
var ErrInUse = errors.New("control socket in use by another process")

// Call sends req to the socket at path and returns the answer. A Response
// with an Error is not an error of Call.
func Call(ctx context.Context, path string, req Request) (Response, error) {
	var resp Response
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			err = ErrStale
		}
		return resp, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return resp, fmt.Errorf("control socket %s: %w", path, err)
	}
	req.V = Version
	if err := WriteMessage(conn, req); err != nil {
		return resp, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := ReadMessage(bufio.NewReader(conn), &resp); err != nil {
		return resp, fmt.Errorf("control socket %s: %w", path, err)
	}
	if resp.V != Version {
		return resp, fmt.Errorf("control socket %s: protocol version %d, want %d", path, resp.V, Version)
	}
	return resp, nil
}

// A Server answers requests on a control socket.
type Server struct {
	ln     *net.UnixListener
	path   string
	inode  os.FileInfo // the socket file as created, to remove only ours
	handle func(Request) Response
	log    *slog.Logger

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen creates the socket at path, mode 0600, its directory (0755) if
// missing, and answers each request with handle, which must be safe for
// concurrent use. A socket file left by a dead process is replaced; a
// live one is not (ErrInUse), nor is a file that is not a socket.
func Listen(path string, handle func(Request) Response, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}
	// Bound under a temporary name, restricted, then renamed into place:
	// the socket is never reachable with looser permissions.
	tmp := path + ".tmp" + strconv.Itoa(os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // Close removes path itself, if still ours
	fail := func(err error) (*Server, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	s := &Server{ln: ln, path: path, inode: fi, handle: handle, log: log, conns: make(map[net.Conn]struct{})}
	s.wg.Go(s.accept)
	return s, nil
}

// checkStale makes sure path may be taken: absent, or a socket nobody
// listens on (which it removes).
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control socket %s: exists and is not a socket", path)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("control socket %s: %w", path, ErrInUse)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("control socket: remove stale %s: %w", path, err)
	}
	return nil
}

// Path is where the server listens.
func (s *Server) Path() string { return s.path }

func (s *Server) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log.Warn("control socket stopped", "path", s.path, "err", err)
			}
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			conn.Close()
			return
		}
		s.conns[conn] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			s.serveConn(conn)
			s.mu.Lock()
			delete(s.conns, conn)
			s.mu.Unlock()
			conn.Close()
		})
	}
}

// serveConn answers the requests of one connection until it ends, is
// idle for Timeout or sends something that is not a request.
func (s *Server) serveConn(conn net.Conn) {
	r := bufio.NewReader(conn)
	for {
		if err := conn.SetDeadline(time.Now().Add(Timeout)); err != nil {
			return
		}
		var req Request
		err := ReadMessage(r, &req)
		if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
			return
		}
		var resp Response
		if err != nil {
			// The stream cannot be trusted past a bad line: answer and hang up.
			resp = Response{Error: err.Error(), Code: CodeBadRequest}
		} else if err := req.Check(); err != nil {
			resp = Response{Error: err.Error(), Code: CodeBadRequest}
		} else {
			resp = s.handle(req)
		}
		resp.V = Version
		if resp.Exports == nil {
			resp.Exports = []Export{}
		}
		if werr := WriteMessage(conn, resp); werr != nil || err != nil {
			return
		}
	}
}

// Close stops answering, ends the connections and removes the socket
// file, unless another process has put its own in its place.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	if fi, serr := os.Lstat(s.path); serr == nil && os.SameFile(fi, s.inode) {
		if rerr := os.Remove(s.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		return fmt.Errorf("control socket: close: %w", err)
	}
	return nil
}
