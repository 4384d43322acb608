package nbd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Defaults for the zero values of Server's fields.
const (
	// DefaultMaxInFlight is the default number of requests a connection
	// executes at once.
	DefaultMaxInFlight = 64
	// DefaultMaxBufferedBytes is the default budget of payload bytes one
	// connection may hold in buffers at once.
	DefaultMaxBufferedBytes = 256 << 20
	// DefaultHandshakeTimeout is the default time a client has to finish
	// the handshake.
	DefaultHandshakeTimeout = 30 * time.Second
	// DefaultShutdownTimeout is the default time in-flight requests have to
	// finish when the server shuts down.
	DefaultShutdownTimeout = 5 * time.Second
)

// readBufferSize is the size of each connection's read buffer; payloads at
// least this large bypass it.
const readBufferSize = 64 << 10

// writeBufferSize is the size of each connection's reply buffer.
const writeBufferSize = 64 << 10

// zeroChunk is the size of the zero buffer used to emulate WRITE_ZEROES.
const zeroChunk = 1 << 20

// Server serves NBD exports. Its zero value needs only Exports (or, for
// ServeTransmission, nothing at all). A Server must not be copied after first
// use; its methods may be called concurrently.
type Server struct {
	// Exports is the set of exports offered during the handshake.
	Exports Exports
	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
	// MaxInFlight bounds how many requests of one connection execute at
	// once; zero means DefaultMaxInFlight. The connection stops reading
	// while the bound is reached.
	MaxInFlight int
	// MaxPayload is the largest READ or WRITE length accepted and the
	// maximum payload advertised in NBD_INFO_BLOCK_SIZE; zero, or anything
	// above DefaultMaxPayload, means DefaultMaxPayload.
	MaxPayload uint32
	// MaxBufferedBytes bounds the payload bytes one connection holds in
	// buffers (a single larger request is still served alone); zero means
	// DefaultMaxBufferedBytes.
	MaxBufferedBytes int64
	// HandshakeTimeout bounds the whole handshake; zero means
	// DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// and be answered once the server's context is cancelled; zero means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	buffers   bufferPool
	zeroOnce  sync.Once
	zeroBlock []byte
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) maxInFlight() int {
	if s.MaxInFlight > 0 {
		return s.MaxInFlight
	}
	return DefaultMaxInFlight
}

func (s *Server) maxPayload() uint32 {
	if s.MaxPayload > 0 && s.MaxPayload < DefaultMaxPayload {
		return max(s.MaxPayload, preferredBlockSize)
	}
	return DefaultMaxPayload
}

func (s *Server) maxBufferedBytes() int64 {
	if s.MaxBufferedBytes > 0 {
		return s.MaxBufferedBytes
	}
	return DefaultMaxBufferedBytes
}

func (s *Server) handshakeTimeout() time.Duration {
	if s.HandshakeTimeout > 0 {
		return s.HandshakeTimeout
	}
	return DefaultHandshakeTimeout
}

func (s *Server) shutdownTimeout() time.Duration {
	if s.ShutdownTimeout > 0 {
		return s.ShutdownTimeout
	}
	return DefaultShutdownTimeout
}

// zeroes returns a read-only buffer of zeroes for emulating WRITE_ZEROES.
func (s *Server) zeroes() []byte {
	s.zeroOnce.Do(func() { s.zeroBlock = make([]byte, zeroChunk) })
	return s.zeroBlock
}

// Serve accepts connections on l and serves each (ServeConn) in its own
// goroutine until ctx is cancelled or Accept fails permanently. It closes l,
// waits for its connections to end, and returns nil after a cancellation or
// the error from Accept otherwise.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	if s.Exports == nil {
		l.Close()
		return errors.New("nbd: serve: Server.Exports is nil")
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()

	log := s.logger()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if retryableAcceptError(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				log.Warn("nbd: accept failed; retrying", "err", err, "delay", backoff)
				select {
				case <-time.After(backoff):
					continue
				case <-ctx.Done():
					return nil
				}
			}
			return fmt.Errorf("nbd: accept: %w", err)
		}
		backoff = 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch err := s.ServeConn(ctx, c); {
			case errors.Is(err, ErrNoDisconnect):
				log.Debug("nbd: connection ended", "remote", c.RemoteAddr().String(), "err", err)
			case err != nil:
				log.Warn("nbd: connection ended", "remote", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

// retryableAcceptError reports whether Accept may succeed if tried again:
// the process or system ran out of descriptors or memory, or a connection
// was aborted before it could be accepted.
func retryableAcceptError(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// ServeConn runs the handshake on c and then serves the chosen export until
// the client disconnects, the connection fails or ctx is cancelled. It
// always closes c. It returns nil when the client ended the session
// properly (NBD_OPT_ABORT, NBD_CMD_DISC) or went away during the handshake,
// ErrNoDisconnect when it closed the connection in the transmission phase
// without NBD_CMD_DISC, and otherwise an error saying why the connection
// was dropped.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	defer c.Close()
	if s.Exports == nil {
		return errors.New("nbd: serve: Server.Exports is nil")
	}
	br := bufio.NewReaderSize(c, readBufferSize)
	bw := bufio.NewWriterSize(c, writeBufferSize)

	c.SetDeadline(time.Now().Add(s.handshakeTimeout()))
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	h := handshake{srv: s, br: br, bw: bw}
	res, err := h.run()
	stop()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errSessionEnded) {
			return nil
		}
		return err
	}
	c.SetDeadline(time.Time{})
	s.logger().Debug("nbd: transmission phase", "remote", addrString(c.RemoteAddr()), "export", res.name, "structured", res.structured)
	return s.transmit(ctx, c, br, bw, res.backend, res.structured)
}

// ServeTransmission serves b on c, starting directly in the transmission
// phase with simple replies: for a socket whose handshake happened elsewhere
// or never (the Linux kernel's nbd driver over a socketpair, given
// TransmissionFlags(b) as its server flags). It always closes c, and returns
// as ServeConn does.
func (s *Server) ServeTransmission(ctx context.Context, c net.Conn, b Backend) error {
	defer c.Close()
	br := bufio.NewReaderSize(c, readBufferSize)
	bw := bufio.NewWriterSize(c, writeBufferSize)
	return s.transmit(ctx, c, br, bw, b, false)
}
