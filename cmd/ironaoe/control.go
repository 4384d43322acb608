package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/initiator"
)

// The control protocol: HTTP/1.1 over a Unix socket, one GET per query.
const (
	// statsPath answers a processStatus as JSON.
	statsPath = "/stats"
	// controlSuffix ends every control socket's name (<pid>.sock).
	controlSuffix = ".sock"
	// controlTimeout bounds one query, so a wedged process cannot hang stat.
	controlTimeout = 5 * time.Second
)

// processStatus is what a serve or attach process reports on its control
// socket.
type processStatus struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Version string    `json:"version"`
	Started time.Time `json:"started"`
	// Interfaces are the network interfaces the initiator uses.
	Interfaces []string `json:"interfaces"`
	// Listeners are serve's NBD listeners, "unix:PATH" or "tcp:ADDR".
	Listeners []string `json:"listeners,omitempty"`
	// Exports are the NBD export names served so far.
	Exports []string `json:"exports,omitempty"`
	// Attached is attach's /dev/nbdN.
	Attached string `json:"attached,omitempty"`
	// Socket is the control socket that answered; stat fills it in.
	Socket string          `json:"socket,omitempty"`
	Stats  initiator.Stats `json:"stats"`
	// Auth is the sealing layer's state per link, with --auth-key.
	Auth []seal.Stats `json:"auth,omitempty"`
}

// controlServer answers stat on a Unix socket.
type controlServer struct {
	srv  *http.Server
	path string
	done chan struct{}
}

// startControl listens on dir/<pid>.sock, creating dir with mode 0700, and
// serves status() there. An empty dir means no control socket; then it
// returns nil, which Close accepts.
func startControl(dir string, status func() processStatus, log *slog.Logger) (*controlServer, error) {
	if dir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	path := filepath.Join(dir, strconv.Itoa(os.Getpid())+controlSuffix)
	// A socket of the same name is a dead process's: pids are unique
	// among the living.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+statsPath, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(status()); err != nil {
			log.Debug("control: write status", "err", err)
		}
	})
	c := &controlServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: controlTimeout,
			WriteTimeout:      controlTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		path: path,
		done: make(chan struct{}),
	}
	go func() {
		defer close(c.done)
		if err := c.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("control socket stopped", "err", err)
		}
	}()
	log.Debug("control socket listening", "path", path)
	return c, nil
}

// Close stops answering and removes the socket.
func (c *controlServer) Close() {
	if c == nil {
		return
	}
	c.srv.Close()
	<-c.done
	os.Remove(c.path)
}

// errStaleSocket is wrapped by queryControl when nothing listens on the
// socket any more: its process died without removing it.
var errStaleSocket = errors.New("stale control socket: no process listens on it")

// queryControl asks the process behind a control socket for its status.
func queryControl(ctx context.Context, path string) (processStatus, error) {
	var st processStatus
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: controlTimeout}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://ironaoe"+statsPath, nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			err = errStaleSocket
		}
		return st, fmt.Errorf("control socket %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("control socket %s: %s", path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("control socket %s: decode status: %w", path, err)
	}
	st.Socket = path
	return st, nil
}

// controlSockets lists the control sockets in dir, sorted; a missing dir
// has none.
func controlSockets(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("control directory: %w", err)
	}
	var paths []string
	for _, e := range entries {
		if e.Type()&fs.ModeSocket != 0 && filepath.Ext(e.Name()) == controlSuffix {
			paths = append(paths, filepath.Join(dir, e.Name()))
		}
	}
	return paths, nil
}
