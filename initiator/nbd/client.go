package nbd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"
)

// ClientConfig says what a Client asks for during the handshake.
type ClientConfig struct {
	// Export is the name of the export to use; empty asks for the default.
	Export string
	// StructuredReplies asks the server for structured replies; the client
	// uses simple replies if the server declines.
	StructuredReplies bool
}

// Client is a minimal NBD client: fixed newstyle handshake with NBD_OPT_GO,
// then READ, WRITE, WRITE_ZEROES, TRIM and FLUSH, any number in flight
// (its methods may be called concurrently). It exists to test servers.
type Client struct {
	nc         net.Conn
	br         *bufio.Reader
	size       int64
	flags      uint16
	minBlock   uint32
	prefBlock  uint32
	maxPayload uint32
	name       string
	desc       string
	structured bool

	wmu  sync.Mutex
	bw   *bufio.Writer
	whdr [requestLen]byte

	mu      sync.Mutex
	pending map[uint64]*call
	cookie  uint64
	err     error // why the client stopped working, once it has

	readerDone chan struct{}
}

// call is one request awaiting its reply.
type call struct {
	typ   uint16
	off   uint64
	buf   []byte // where READ data goes
	got   uint64 // bytes of buf covered by structured chunks
	errno Errno
	msg   string
	err   error // a failure on the client's side
	done  chan struct{}
}

// Dial connects to an NBD server ("tcp" or "unix" network) and runs the
// handshake (NewClient).
func Dial(ctx context.Context, network, address string, cfg ClientConfig) (*Client, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("nbd: dial: %w", err)
	}
	c, err := NewClient(ctx, nc, cfg)
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// NewClient runs the handshake on nc and returns a client in the
// transmission phase. ctx bounds the handshake only. On error the caller
// still owns nc; on success the Client does and Close closes it.
func NewClient(ctx context.Context, nc net.Conn, cfg ClientConfig) (*Client, error) {
	c := &Client{
		nc:         nc,
		br:         bufio.NewReaderSize(nc, readBufferSize),
		bw:         bufio.NewWriterSize(nc, writeBufferSize),
		pending:    make(map[uint64]*call),
		readerDone: make(chan struct{}),
		minBlock:   1,
		prefBlock:  preferredBlockSize,
		maxPayload: DefaultMaxPayload,
	}
	stop := deadlineFromContext(ctx, nc)
	err := c.handshake(cfg)
	stop()
	if err != nil {
		return nil, err
	}
	go c.readLoop()
	return c, nil
}

// deadlineFromContext applies ctx's deadline and cancellation to nc until
// the returned function is called, which also clears the deadline.
func deadlineFromContext(ctx context.Context, nc net.Conn) func() {
	if d, ok := ctx.Deadline(); ok {
		nc.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	return func() {
		stop()
		nc.SetDeadline(time.Time{})
	}
}

// OptionError is a server's error reply to a handshake option.
type OptionError struct {
	Option  uint32
	Reply   uint32
	Message string
}

// Error describes the refusal.
func (e *OptionError) Error() string {
	return fmt.Sprintf("nbd: option %d refused with reply %#x: %s", e.Option, e.Reply, e.Message)
}

// greet reads the server's greeting and sends the client flags.
func (c *Client) greet() error {
	var g [18]byte
	if _, err := io.ReadFull(c.br, g[:]); err != nil {
		return fmt.Errorf("nbd: client: read greeting: %w", err)
	}
	if binary.BigEndian.Uint64(g[0:]) != magicInit || binary.BigEndian.Uint64(g[8:]) != magicOption {
		return errors.New("nbd: client: not a fixed newstyle NBD server")
	}
	hflags := binary.BigEndian.Uint16(g[16:])
	if hflags&handshakeFixedNewstyle == 0 {
		return errors.New("nbd: client: server lacks fixed newstyle negotiation")
	}
	flags := uint32(clientFixedNewstyle)
	if hflags&handshakeNoZeroes != 0 {
		flags |= clientNoZeroes
	}
	c.bw.Write(binary.BigEndian.AppendUint32(nil, flags))
	return c.bw.Flush()
}

// sendOption sends one option with its data.
func (c *Client) sendOption(opt uint32, data []byte) error {
	var h [optionHeaderLen]byte
	binary.BigEndian.PutUint64(h[0:], magicOption)
	binary.BigEndian.PutUint32(h[8:], opt)
	binary.BigEndian.PutUint32(h[12:], uint32(len(data)))
	c.bw.Write(h[:])
	c.bw.Write(data)
	if err := c.bw.Flush(); err != nil {
		return fmt.Errorf("nbd: client: send option %d: %w", opt, err)
	}
	return nil
}

// readOptionReply reads one option reply to opt.
func (c *Client) readOptionReply(opt uint32) (uint32, []byte, error) {
	var h [optionReplyLen]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		return 0, nil, fmt.Errorf("nbd: client: read option reply: %w", err)
	}
	if binary.BigEndian.Uint64(h[0:]) != magicOptionReply {
		return 0, nil, errors.New("nbd: client: bad option reply magic")
	}
	if got := binary.BigEndian.Uint32(h[8:]); got != opt {
		return 0, nil, fmt.Errorf("nbd: client: reply for option %d, want %d", got, opt)
	}
	typ := binary.BigEndian.Uint32(h[12:])
	n := binary.BigEndian.Uint32(h[16:])
	if n > maxOptionLen {
		return 0, nil, fmt.Errorf("nbd: client: option reply of %d bytes", n)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(c.br, data); err != nil {
		return 0, nil, fmt.Errorf("nbd: client: read option reply: %w", err)
	}
	if typ&(1<<31) != 0 {
		return typ, data, &OptionError{Option: opt, Reply: typ, Message: string(data)}
	}
	return typ, data, nil
}

// handshake negotiates up to the transmission phase.
func (c *Client) handshake(cfg ClientConfig) error {
	if err := c.greet(); err != nil {
		return err
	}
	if cfg.StructuredReplies {
		if err := c.sendOption(optStructuredReply, nil); err != nil {
			return err
		}
		_, _, err := c.readOptionReply(optStructuredReply)
		var oe *OptionError
		switch {
		case err == nil:
			c.structured = true
		case errors.As(err, &oe) && oe.Reply == repErrUnsup:
		default:
			return err
		}
	}

	data := binary.BigEndian.AppendUint32(nil, uint32(len(cfg.Export)))
	data = append(data, cfg.Export...)
	data = binary.BigEndian.AppendUint16(data, 3)
	for _, t := range []uint16{infoName, infoDescription, infoBlockSize} {
		data = binary.BigEndian.AppendUint16(data, t)
	}
	if err := c.sendOption(optGo, data); err != nil {
		return err
	}
	gotExport := false
	for {
		typ, data, err := c.readOptionReply(optGo)
		if err != nil {
			return err
		}
		switch typ {
		case repAck:
			if !gotExport {
				return errors.New("nbd: client: server accepted GO without NBD_INFO_EXPORT")
			}
			return nil
		case repInfo:
			if len(data) < 2 {
				return errors.New("nbd: client: short NBD_REP_INFO")
			}
			switch binary.BigEndian.Uint16(data) {
			case infoExport:
				if len(data) != 12 {
					return errors.New("nbd: client: bad NBD_INFO_EXPORT length")
				}
				c.size = int64(binary.BigEndian.Uint64(data[2:]))
				c.flags = binary.BigEndian.Uint16(data[10:])
				gotExport = true
			case infoName:
				c.name = string(data[2:])
			case infoDescription:
				c.desc = string(data[2:])
			case infoBlockSize:
				if len(data) != 14 {
					return errors.New("nbd: client: bad NBD_INFO_BLOCK_SIZE length")
				}
				c.minBlock = binary.BigEndian.Uint32(data[2:])
				c.prefBlock = binary.BigEndian.Uint32(data[6:])
				c.maxPayload = binary.BigEndian.Uint32(data[10:])
			}
		default:
			return fmt.Errorf("nbd: client: unexpected reply %d to GO", typ)
		}
	}
}

// List runs the handshake on nc, asks for the server's exports and ends
// the session with NBD_OPT_ABORT. The caller closes nc.
func List(ctx context.Context, nc net.Conn) ([]ExportInfo, error) {
	c := &Client{nc: nc, br: bufio.NewReader(nc), bw: bufio.NewWriter(nc)}
	stop := deadlineFromContext(ctx, nc)
	defer stop()
	if err := c.greet(); err != nil {
		return nil, err
	}
	if err := c.sendOption(optList, nil); err != nil {
		return nil, err
	}
	var list []ExportInfo
	for {
		typ, data, err := c.readOptionReply(optList)
		if err != nil {
			return nil, err
		}
		if typ == repAck {
			break
		}
		if typ != repServer || len(data) < 4 {
			return nil, fmt.Errorf("nbd: client: unexpected reply %d to LIST", typ)
		}
		n := binary.BigEndian.Uint32(data)
		if uint64(n) > uint64(len(data)-4) {
			return nil, errors.New("nbd: client: bad NBD_REP_SERVER name length")
		}
		list = append(list, ExportInfo{Name: string(data[4 : 4+n]), Description: string(data[4+n:])})
	}
	if err := c.sendOption(optAbort, nil); err != nil {
		return nil, err
	}
	// The ACK to ABORT is optional; a server may just hang up.
	c.readOptionReply(optAbort)
	return list, nil
}

// Size reports the export's size in bytes.
func (c *Client) Size() int64 { return c.size }

// Flags reports the export's transmission flags.
func (c *Client) Flags() uint16 { return c.flags }

// Name reports the export's canonical name, if the server sent it.
func (c *Client) Name() string { return c.name }

// Description reports the export's description, if the server sent one.
func (c *Client) Description() string { return c.desc }

// BlockSize reports the server's size constraints (the protocol's defaults
// if it sent none).
func (c *Client) BlockSize() (minimum, preferred, maxPayload uint32) {
	return c.minBlock, c.prefBlock, c.maxPayload
}

// Structured reports whether structured replies were negotiated.
func (c *Client) Structured() bool { return c.structured }

// ReadAt reads len(p) bytes at off.
func (c *Client) ReadAt(ctx context.Context, p []byte, off int64) error {
	if err := checkRange(off, int64(len(p))); err != nil {
		return err
	}
	return c.do(ctx, cmdRead, 0, uint64(off), uint32(len(p)), nil, p)
}

// WriteAt writes p at off; fua asks for it to be durable before the reply.
func (c *Client) WriteAt(ctx context.Context, p []byte, off int64, fua bool) error {
	if err := checkRange(off, int64(len(p))); err != nil {
		return err
	}
	return c.do(ctx, cmdWrite, fuaFlag(fua), uint64(off), uint32(len(p)), p, nil)
}

// WriteZeroes zeroes length bytes at off.
func (c *Client) WriteZeroes(ctx context.Context, off, length int64, fua bool) error {
	if err := checkRange(off, length); err != nil {
		return err
	}
	return c.do(ctx, cmdWriteZeroes, fuaFlag(fua), uint64(off), uint32(length), nil, nil)
}

// Trim discards length bytes at off.
func (c *Client) Trim(ctx context.Context, off, length int64) error {
	if err := checkRange(off, length); err != nil {
		return err
	}
	return c.do(ctx, cmdTrim, 0, uint64(off), uint32(length), nil, nil)
}

// checkRange rejects what a request header cannot carry.
func checkRange(off, length int64) error {
	if off < 0 || length < 0 || length > math.MaxUint32 {
		return fmt.Errorf("nbd: client: offset %d, length %d out of range", off, length)
	}
	return nil
}

// Flush makes completed writes durable.
func (c *Client) Flush(ctx context.Context) error {
	return c.do(ctx, cmdFlush, 0, 0, 0, nil, nil)
}

func fuaFlag(fua bool) uint16 {
	if fua {
		return cmdFlagFUA
	}
	return 0
}

// do sends one request and waits for its reply. payload is sent after the
// header; a READ's data lands in into. If ctx ends first the whole client is
// shut down, since the request cannot be withdrawn.
func (c *Client) do(ctx context.Context, typ, flags uint16, off uint64, length uint32, payload, into []byte) error {
	cl := &call{typ: typ, off: off, buf: into, done: make(chan struct{})}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.cookie++
	cookie := c.cookie
	c.pending[cookie] = cl
	c.mu.Unlock()

	c.wmu.Lock()
	h := c.whdr[:]
	binary.BigEndian.PutUint32(h[0:], magicRequest)
	binary.BigEndian.PutUint16(h[4:], flags)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], length)
	c.bw.Write(h)
	c.bw.Write(payload)
	err := c.bw.Flush()
	c.wmu.Unlock()
	if err != nil {
		c.fail(fmt.Errorf("nbd: client: send request: %w", err))
	}

	select {
	case <-cl.done:
	case <-ctx.Done():
		c.fail(ctx.Err())
		<-cl.done
		return ctx.Err()
	}
	switch {
	case cl.err != nil:
		return cl.err
	case cl.errno != 0 && cl.msg != "":
		return fmt.Errorf("nbd: server: %s: %w", cl.msg, cl.errno)
	case cl.errno != 0:
		return cl.errno
	}
	return nil
}

// fail stops the client: records why and closes the connection, which ends
// the reader and with it every pending call.
func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
	c.nc.Close()
}

// Close sends NBD_CMD_DISC and closes the connection. Calls still waiting
// for replies fail.
func (c *Client) Close() error {
	c.mu.Lock()
	broken := c.err != nil
	c.mu.Unlock()
	if !broken {
		c.wmu.Lock()
		h := c.whdr[:]
		clear(h)
		binary.BigEndian.PutUint32(h[0:], magicRequest)
		binary.BigEndian.PutUint16(h[6:], cmdDisc)
		c.bw.Write(h)
		c.bw.Flush()
		c.wmu.Unlock()
	}
	c.fail(net.ErrClosed)
	<-c.readerDone
	return nil
}

// take returns the pending call for cookie, removing it when done is set.
func (c *Client) take(cookie uint64, done bool) *call {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl := c.pending[cookie]
	if done {
		delete(c.pending, cookie)
	}
	return cl
}

// readLoop reads replies and completes calls until the connection ends.
func (c *Client) readLoop() {
	defer close(c.readerDone)
	err := c.readReplies()
	c.fail(err)
	c.mu.Lock()
	for cookie, cl := range c.pending {
		cl.err = c.err
		close(cl.done)
		delete(c.pending, cookie)
	}
	c.mu.Unlock()
}

func (c *Client) readReplies() error {
	var h [structuredReplyLen]byte
	for {
		if _, err := io.ReadFull(c.br, h[:4]); err != nil {
			return fmt.Errorf("nbd: client: read reply: %w", err)
		}
		switch binary.BigEndian.Uint32(h[:]) {
		case magicSimpleReply:
			if err := c.readSimple(h[:simpleReplyLen]); err != nil {
				return err
			}
		case magicStructuredRep:
			if !c.structured {
				return errors.New("nbd: client: structured reply not negotiated")
			}
			if err := c.readChunk(h[:]); err != nil {
				return err
			}
		default:
			return fmt.Errorf("nbd: client: bad reply magic %#x", binary.BigEndian.Uint32(h[:]))
		}
	}
}

func (c *Client) readSimple(h []byte) error {
	if _, err := io.ReadFull(c.br, h[4:]); err != nil {
		return fmt.Errorf("nbd: client: read reply: %w", err)
	}
	cl := c.take(binary.BigEndian.Uint64(h[8:]), true)
	if cl == nil {
		return errors.New("nbd: client: reply with unknown cookie")
	}
	cl.errno = Errno(binary.BigEndian.Uint32(h[4:]))
	if cl.typ == cmdRead && c.structured {
		cl.err = errors.New("nbd: client: simple reply to a structured read")
		close(cl.done)
		return cl.err
	}
	if cl.typ == cmdRead && cl.errno == 0 {
		if _, err := io.ReadFull(c.br, cl.buf); err != nil {
			cl.err = fmt.Errorf("nbd: client: read data: %w", err)
			close(cl.done)
			return cl.err
		}
	}
	close(cl.done)
	return nil
}

func (c *Client) readChunk(h []byte) error {
	if _, err := io.ReadFull(c.br, h[4:]); err != nil {
		return fmt.Errorf("nbd: client: read chunk: %w", err)
	}
	flags := binary.BigEndian.Uint16(h[4:])
	typ := binary.BigEndian.Uint16(h[6:])
	done := flags&replyFlagDone != 0
	cl := c.take(binary.BigEndian.Uint64(h[8:]), done)
	if cl == nil {
		return errors.New("nbd: client: chunk with unknown cookie")
	}
	length := binary.BigEndian.Uint32(h[16:])
	err := c.readChunkPayload(cl, typ, length)
	if err != nil {
		cl.err = err
		close(cl.done)
		return err
	}
	if done {
		if cl.typ == cmdRead && cl.errno == 0 && cl.got != uint64(len(cl.buf)) {
			cl.err = errors.New("nbd: client: structured read reply does not cover the request")
		}
		close(cl.done)
	}
	return nil
}

func (c *Client) readChunkPayload(cl *call, typ uint16, length uint32) error {
	var b [14]byte
	switch {
	case typ == replyTypeNone:
		if length != 0 {
			return errors.New("nbd: client: NONE chunk with payload")
		}
	case typ == replyTypeOffsetData && cl.typ == cmdRead:
		if length < 9 {
			return errors.New("nbd: client: short OFFSET_DATA chunk")
		}
		if _, err := io.ReadFull(c.br, b[:8]); err != nil {
			return err
		}
		dst, err := cl.region(binary.BigEndian.Uint64(b[:]), uint64(length-8))
		if err != nil {
			return err
		}
		if _, err := io.ReadFull(c.br, dst); err != nil {
			return err
		}
	case typ == replyTypeOffsetHole && cl.typ == cmdRead:
		if length != 12 {
			return errors.New("nbd: client: bad OFFSET_HOLE chunk")
		}
		if _, err := io.ReadFull(c.br, b[:12]); err != nil {
			return err
		}
		dst, err := cl.region(binary.BigEndian.Uint64(b[:]), uint64(binary.BigEndian.Uint32(b[8:])))
		if err != nil {
			return err
		}
		clear(dst)
	case typ&(1<<15) != 0:
		if length < 6 || length > maxOptionLen {
			return errors.New("nbd: client: bad error chunk length")
		}
		p := make([]byte, length)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return err
		}
		cl.errno = Errno(binary.BigEndian.Uint32(p))
		n := int(binary.BigEndian.Uint16(p[4:]))
		if cl.errno == 0 || n > len(p)-6 {
			return errors.New("nbd: client: malformed error chunk")
		}
		cl.msg = string(p[6 : 6+n])
	default:
		return fmt.Errorf("nbd: client: unexpected chunk type %d", typ)
	}
	return nil
}

// region returns the part of a read's buffer that a chunk at off of n bytes
// covers, counting it.
func (cl *call) region(off, n uint64) ([]byte, error) {
	if n == 0 || off < cl.off || off-cl.off > uint64(len(cl.buf)) || n > uint64(len(cl.buf))-(off-cl.off) {
		return nil, errors.New("nbd: client: chunk outside the request")
	}
	cl.got += n
	start := off - cl.off
	return cl.buf[start : start+n], nil
}
