package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// request is one transmission request on its way through a connection. The
// connection owns a fixed set of them (its in-flight bound) and recycles
// them.
type request struct {
	flags  uint16
	typ    uint16
	cookie uint64
	off    uint64
	length uint32
	// buf holds the payload of a WRITE or the data of a READ (nil for
	// other commands and for requests answered without executing them).
	buf *[]byte
	// charged is what buf counts against the connection's byte budget.
	charged int64
	// errno, when set, is the answer: the request failed validation and is
	// not executed.
	errno Errno
	msg   string
}

// conn is the transmission phase of one connection.
type conn struct {
	srv        *Server
	nc         net.Conn
	br         *bufio.Reader
	log        *slog.Logger
	backend    Backend
	caps       capabilities
	structured bool
	maxPayload uint32

	// ctx is passed to the backend; cancelled on shutdown (when parent
	// is) and when the connection breaks.
	parent context.Context
	ctx    context.Context
	cancel context.CancelFunc

	free    chan *request
	work    chan *request
	workers sync.WaitGroup
	rhdr    [requestLen]byte

	budgetMu    sync.Mutex
	budgetFreed *sync.Cond
	buffered    int64
	maxBuffered int64

	// The writer: replies from all workers go through bw under wmu.
	// waiting counts workers holding or queueing for wmu, so that the
	// last of a burst flushes.
	wmu     sync.Mutex
	bw      *bufio.Writer
	waiting atomic.Int32
	werr    error
	whdr    [structuredReplyLen + 8]byte
}

// transmit runs the transmission phase on nc until the client disconnects,
// the connection breaks or ctx is cancelled. The caller closes nc.
func (s *Server) transmit(ctx context.Context, nc net.Conn, br *bufio.Reader, bw *bufio.Writer, b Backend, structured bool) error {
	inFlight := s.maxInFlight()
	c := &conn{
		srv:         s,
		parent:      ctx,
		nc:          nc,
		br:          br,
		bw:          bw,
		log:         s.logger().With("remote", addrString(nc.RemoteAddr())),
		backend:     b,
		caps:        capabilitiesOf(b),
		structured:  structured,
		maxPayload:  s.maxPayload(),
		free:        make(chan *request, inFlight),
		work:        make(chan *request, inFlight),
		maxBuffered: s.maxBufferedBytes(),
	}
	c.budgetFreed = sync.NewCond(&c.budgetMu)
	c.ctx, c.cancel = context.WithCancel(ctx)
	defer c.cancel()
	for range inFlight {
		c.free <- new(request)
	}
	c.workers.Add(inFlight)
	for range inFlight {
		go c.worker()
	}
	stop := context.AfterFunc(ctx, func() {
		// Wake the reader, and give in-flight replies a bounded time.
		nc.SetReadDeadline(time.Now())
		nc.SetWriteDeadline(time.Now().Add(s.shutdownTimeout()))
	})
	defer stop()

	err := c.readLoop()
	close(c.work)
	if err != nil {
		// The connection is being dropped: nobody will read the answers.
		c.cancel()
	}
	c.workers.Wait()

	c.wmu.Lock()
	werr := c.werr
	if werr == nil {
		werr = c.bw.Flush()
	}
	c.wmu.Unlock()

	switch {
	case c.shuttingDown():
		return nil
	case err != nil:
		return err
	case werr != nil && !errors.Is(werr, net.ErrClosed):
		return fmt.Errorf("nbd: send reply: %w", werr)
	}
	return nil
}

// shuttingDown reports whether the server's context has been cancelled.
func (c *conn) shuttingDown() bool { return c.parent.Err() != nil }

// errDisconnect ends the read loop on NBD_CMD_DISC.
var errDisconnect = errors.New("nbd: disconnect")

// ErrNoDisconnect is returned when a client closes its connection without
// sending NBD_CMD_DISC first. Many clients do so harmlessly, but for a
// kernel-attached device it means the kernel dropped the socket, which its
// supervisor must tell apart from an orderly disconnect.
var ErrNoDisconnect = errors.New("nbd: connection closed without NBD_CMD_DISC")

// readLoop reads requests and hands them to the workers. It returns nil
// when the client disconnected properly (the in-flight requests are still
// to be answered) and otherwise why the connection must be dropped.
func (c *conn) readLoop() error {
	for {
		r := <-c.free
		err := c.readRequest(r)
		if err == nil && r.typ == cmdDisc {
			err = errDisconnect
		}
		if err != nil {
			c.recycle(r)
			if errors.Is(err, errDisconnect) {
				return nil
			}
			if c.shuttingDown() {
				return nil
			}
			c.wmu.Lock()
			werr := c.werr
			c.wmu.Unlock()
			if werr != nil {
				return fmt.Errorf("nbd: send reply: %w", werr)
			}
			return err
		}
		c.work <- r
	}
}

// readRequest reads one request header and its payload into r, validating
// it. A request that fails validation comes back with r.errno set and its
// payload discarded; an error means the connection cannot continue.
func (c *conn) readRequest(r *request) error {
	hdr := c.rhdr[:]
	if _, err := io.ReadFull(c.br, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			return ErrNoDisconnect
		}
		return fmt.Errorf("nbd: read request: %w", err)
	}
	if m := binary.BigEndian.Uint32(hdr[0:]); m != magicRequest {
		return fmt.Errorf("nbd: bad request magic %#x", m)
	}
	r.flags = binary.BigEndian.Uint16(hdr[4:])
	r.typ = binary.BigEndian.Uint16(hdr[6:])
	r.cookie = binary.BigEndian.Uint64(hdr[8:])
	r.off = binary.BigEndian.Uint64(hdr[16:])
	r.length = binary.BigEndian.Uint32(hdr[24:])
	r.errno, r.msg = c.check(r)

	switch r.typ {
	case cmdWrite:
		if r.length > DefaultMaxPayload {
			return fmt.Errorf("nbd: write payload of %d bytes", r.length)
		}
		if r.errno != 0 {
			if _, err := io.CopyN(io.Discard, c.br, int64(r.length)); err != nil {
				return fmt.Errorf("nbd: discard write payload: %w", err)
			}
			return nil
		}
		if r.length == 0 {
			return nil
		}
		c.charge(r)
		if _, err := io.ReadFull(c.br, *r.buf); err != nil {
			return fmt.Errorf("nbd: read write payload: %w", err)
		}
	case cmdRead:
		if r.errno == 0 && r.length > 0 {
			c.charge(r)
		}
	}
	return nil
}

// Messages sent with structured error replies.
const (
	msgBadCommand   = "unsupported command"
	msgBadFlags     = "unsupported command flags"
	msgBadFlush     = "flush with nonzero offset or length"
	msgNoTrim       = "trim not supported by this export"
	msgReadOnly     = "export is read-only"
	msgTooLong      = "length exceeds the maximum payload"
	msgOutOfRange   = "request extends beyond the end of the export"
	msgUnaligned    = "request not aligned to the minimum block size"
	msgShuttingDown = "server is shutting down"
)

// check validates a request against the export. It returns the error to
// answer with, or 0 if the request is to be executed.
func (c *conn) check(r *request) (Errno, string) {
	allowed := uint16(cmdFlagFUA)
	switch r.typ {
	case cmdDisc:
		return 0, ""
	case cmdRead:
		if c.structured {
			allowed |= cmdFlagDF
		}
	case cmdWrite, cmdFlush, cmdTrim, cmdCache:
	case cmdWriteZeroes:
		allowed |= cmdFlagNoHole
	default:
		return EINVAL, msgBadCommand
	}
	if r.flags&^allowed != 0 {
		return EINVAL, msgBadFlags
	}
	isWrite := r.typ == cmdWrite || r.typ == cmdWriteZeroes
	if c.caps.readOnly && (isWrite || r.typ == cmdTrim) {
		return EPERM, msgReadOnly
	}
	switch r.typ {
	case cmdFlush:
		if r.off != 0 || r.length != 0 {
			return EINVAL, msgBadFlush
		}
		return 0, ""
	case cmdTrim:
		if c.caps.trimmer == nil {
			return EINVAL, msgNoTrim
		}
	}
	if (r.typ == cmdRead || r.typ == cmdWrite) && r.length > c.maxPayload {
		return EINVAL, msgTooLong
	}
	size := uint64(c.caps.size)
	if r.off > size || uint64(r.length) > size-r.off {
		if isWrite {
			return ENOSPC, msgOutOfRange
		}
		return EINVAL, msgOutOfRange
	}
	if m := uint64(c.caps.minBlock); m > 1 && (r.off%m != 0 || uint64(r.length)%m != 0) {
		return EINVAL, msgUnaligned
	}
	return 0, ""
}

// charge gives r a buffer of r.length bytes, waiting until the connection's
// byte budget allows it. A request larger than the whole budget waits for
// the connection to have nothing else buffered.
func (c *conn) charge(r *request) {
	n := int64(r.length)
	c.budgetMu.Lock()
	for c.buffered > 0 && c.buffered+n > c.maxBuffered {
		c.budgetFreed.Wait()
	}
	c.buffered += n
	c.budgetMu.Unlock()
	r.charged = n
	r.buf = c.srv.buffers.get(int(r.length))
}

// recycle returns r's buffer and budget and puts r back on the free list.
func (c *conn) recycle(r *request) {
	if r.buf != nil {
		c.srv.buffers.put(r.buf)
		r.buf = nil
	}
	if r.charged > 0 {
		c.budgetMu.Lock()
		c.buffered -= r.charged
		c.budgetMu.Unlock()
		c.budgetFreed.Signal()
		r.charged = 0
	}
	r.errno, r.msg = 0, ""
	c.free <- r
}

// worker executes requests until the work channel closes.
func (c *conn) worker() {
	defer c.workers.Done()
	for r := range c.work {
		c.execute(r)
		c.recycle(r)
	}
}

// execute runs one request against the backend and answers it.
func (c *conn) execute(r *request) {
	if r.errno != 0 {
		c.reply(r, r.errno, r.msg, nil)
		return
	}
	if c.ctx.Err() != nil {
		c.reply(r, ESHUTDOWN, msgShuttingDown, nil)
		return
	}
	ctx, b := c.ctx, c.backend
	off, length := int64(r.off), int64(r.length)
	fua := r.flags&cmdFlagFUA != 0
	var err error
	var op string
	switch r.typ {
	case cmdRead:
		if length > 0 {
			op, err = "read", b.ReadAt(ctx, *r.buf, off)
		}
		if err == nil {
			var data []byte
			if r.buf != nil {
				data = *r.buf
			}
			c.reply(r, 0, "", data)
			return
		}
	case cmdWrite:
		if length > 0 {
			op, err = "write", b.WriteAt(ctx, *r.buf, off, fua)
		}
	case cmdFlush:
		op, err = "flush", b.Flush(ctx)
	case cmdTrim:
		if length > 0 {
			op, err = "trim", c.caps.trimmer.Trim(ctx, off, length)
			if err == nil && fua {
				op, err = "flush after trim", b.Flush(ctx)
			}
		}
	case cmdWriteZeroes:
		if length > 0 {
			op, err = "write zeroes", c.writeZeroes(ctx, off, length, fua)
		}
	case cmdCache:
		// Advisory, and not advertised: nothing to do.
	}
	if err != nil {
		c.fail(r, op, err)
		return
	}
	c.reply(r, 0, "", nil)
}

// writeZeroes zeroes a range with the backend's ZeroWriter, or by writing
// zero buffers when it has none.
func (c *conn) writeZeroes(ctx context.Context, off, length int64, fua bool) error {
	if c.caps.zeroer != nil {
		return c.caps.zeroer.WriteZeroesAt(ctx, off, length, fua)
	}
	zero := c.srv.zeroes()
	for length > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(length, int64(len(zero)))
		if err := c.backend.WriteAt(ctx, zero[:n], off, fua); err != nil {
			return err
		}
		off += n
		length -= n
	}
	return nil
}

// fail answers r with the protocol error matching err, logging backend
// failures that are not the client's or the shutdown's doing.
func (c *conn) fail(r *request, op string, err error) {
	errno := c.errnoOf(err)
	if errno != ESHUTDOWN {
		c.log.Warn("nbd: backend "+op+" failed", "offset", r.off, "length", r.length, "errno", uint32(errno), "err", err)
	}
	msg := ""
	if c.structured {
		msg = truncate(op + ": " + err.Error())
	}
	c.reply(r, errno, msg, nil)
}

// errnoOf maps a backend error to the protocol's error values.
func (c *conn) errnoOf(err error) Errno {
	var e Errno
	if errors.As(err, &e) && e != 0 {
		return e
	}
	if c.ctx.Err() != nil {
		return ESHUTDOWN
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, os.ErrPermission) {
			return EPERM
		}
		return EIO
	}
	switch errno {
	case syscall.EPERM, syscall.EACCES, syscall.EROFS:
		return EPERM
	case syscall.ENOSPC, syscall.EDQUOT, syscall.EFBIG:
		return ENOSPC
	case syscall.EINVAL:
		return EINVAL
	case syscall.ENOMEM:
		return ENOMEM
	case syscall.EOVERFLOW:
		return EOVERFLOW
	case syscall.ESHUTDOWN:
		return ESHUTDOWN
	}
	return EIO
}

// reply sends the answer to r: an error, the data of a READ, or plain
// success. Replies from concurrent workers are serialized; the last writer
// of a burst flushes.
func (c *conn) reply(r *request, errno Errno, msg string, data []byte) {
	c.waiting.Add(1)
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.werr == nil {
		c.werr = c.writeReply(r, errno, msg, data)
	}
	if c.waiting.Add(-1) == 0 && c.werr == nil {
		c.werr = c.bw.Flush()
	}
	if c.werr != nil {
		// The client cannot get answers any more: stop reading requests.
		c.nc.SetReadDeadline(time.Now())
		c.cancel()
	}
}

// writeReply encodes one reply into the buffered writer.
func (c *conn) writeReply(r *request, errno Errno, msg string, data []byte) error {
	h := c.whdr[:]
	if !c.structured || (errno == 0 && r.typ != cmdRead) {
		binary.BigEndian.PutUint32(h[0:], magicSimpleReply)
		binary.BigEndian.PutUint32(h[4:], uint32(errno))
		binary.BigEndian.PutUint64(h[8:], r.cookie)
		if _, err := c.bw.Write(h[:simpleReplyLen]); err != nil {
			return err
		}
		if errno == 0 && r.typ == cmdRead {
			_, err := c.bw.Write(data)
			return err
		}
		return nil
	}

	binary.BigEndian.PutUint32(h[0:], magicStructuredRep)
	binary.BigEndian.PutUint16(h[4:], replyFlagDone)
	binary.BigEndian.PutUint64(h[8:], r.cookie)
	switch {
	case errno != 0:
		binary.BigEndian.PutUint16(h[6:], replyTypeError)
		binary.BigEndian.PutUint32(h[16:], uint32(6+len(msg)))
		binary.BigEndian.PutUint32(h[20:], uint32(errno))
		binary.BigEndian.PutUint16(h[24:], uint16(len(msg)))
		if _, err := c.bw.Write(h[:structuredReplyLen+6]); err != nil {
			return err
		}
		_, err := c.bw.WriteString(msg)
		return err
	case len(data) == 0:
		binary.BigEndian.PutUint16(h[6:], replyTypeNone)
		binary.BigEndian.PutUint32(h[16:], 0)
		_, err := c.bw.Write(h[:structuredReplyLen])
		return err
	default:
		binary.BigEndian.PutUint16(h[6:], replyTypeOffsetData)
		binary.BigEndian.PutUint32(h[16:], uint32(8+len(data)))
		binary.BigEndian.PutUint64(h[20:], r.off)
		if _, err := c.bw.Write(h[:structuredReplyLen+8]); err != nil {
			return err
		}
		_, err := c.bw.Write(data)
		return err
	}
}

// addrString formats a connection's address, which may be missing.
func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}
