package nbd

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"time"
)

// ListenUnix listens on a Unix domain socket at path, for clients such as
// nbd+unix:///export?socket=path. A stale socket file left by a dead server
// is removed first; a live one (something accepts connections on it) or a
// file that is not a socket is an error. The socket is made mode 0660 and is
// removed when the listener is closed.
func ListenUnix(path string) (net.Listener, error) {
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if fi.Mode()&fs.ModeSocket == 0 {
			return nil, fmt.Errorf("nbd: listen %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("nbd: listen %s: a server is already listening there", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("nbd: listen %s: remove stale socket: %w", path, err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("nbd: listen %s: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen: %w", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("nbd: listen %s: chmod: %w", path, err)
	}
	return l, nil
}

// ListenTCP listens on a TCP address such as "127.0.0.1:10809" (the NBD
// port) or ":0". Accepted connections have Nagle's algorithm disabled, as
// the protocol recommends (Go's default for TCP).
func ListenTCP(address string) (net.Listener, error) {
	l, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("nbd: listen: %w", err)
	}
	return l, nil
}
