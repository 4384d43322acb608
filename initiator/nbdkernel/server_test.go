package nbdkernel

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// NBD transmission-phase wire values the test server speaks (NBD proto.md;
// include/uapi/linux/nbd.h).
const (
	nbdRequestMagic = 0x25609513
	nbdReplyMagic   = 0x67446698
	nbdRequestLen   = 28
	nbdReplyLen     = 16

	nbdCmdRead        = 0
	nbdCmdWrite       = 1
	nbdCmdDisc        = 2
	nbdCmdFlush       = 3
	nbdCmdTrim        = 4
	nbdCmdWriteZeroes = 6

	// Commands only the fake kernel sends, to steer the test server.
	testCmdFail = 0xff // Serve returns an error
	testCmdHang = 0xfe // Serve blocks, as if stuck in its backend

	flagSendFlush = 1 << 2
	flagSendFUA   = 1 << 3
	flagSendTrim  = 1 << 5

	errnoEINVAL = 22
)

// memServer is a minimal NBD transmission-phase server with simple replies
// over an in-memory export: the Serve function of the tests.
type memServer struct {
	mu      sync.Mutex
	data    []byte
	flushes atomic.Int64
	running atomic.Int64  // Serve calls in progress
	release chan struct{} // closing it ends every testCmdHang

	connMu sync.Mutex
	conns  map[net.Conn]struct{}
}

func newMemServer(size int) *memServer {
	return &memServer{
		data:    make([]byte, size),
		release: make(chan struct{}),
		conns:   make(map[net.Conn]struct{}),
	}
}

// closeConns closes every connection being served, as a crashing server
// would.
func (s *memServer) closeConns() {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}

// serve is a Config.Serve function.
func (s *memServer) serve(ctx context.Context, conn net.Conn) error {
	s.running.Add(1)
	defer s.running.Add(-1)
	s.connMu.Lock()
	s.conns[conn] = struct{}{}
	s.connMu.Unlock()
	defer func() {
		s.connMu.Lock()
		delete(s.conns, conn)
		s.connMu.Unlock()
	}()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var req [nbdRequestLen]byte
	var payload []byte
	for {
		if _, err := io.ReadFull(conn, req[:]); err != nil {
			return fmt.Errorf("read request: %w", err)
		}
		if binary.BigEndian.Uint32(req[0:]) != nbdRequestMagic {
			return errors.New("bad request magic")
		}
		typ := binary.BigEndian.Uint16(req[6:])
		handle := req[8:16]
		off := binary.BigEndian.Uint64(req[16:])
		length := binary.BigEndian.Uint32(req[24:])
		inRange := off <= uint64(len(s.data)) && uint64(length) <= uint64(len(s.data))-off

		var errno uint32
		var reply []byte
		switch typ {
		case nbdCmdDisc:
			return nil
		case testCmdFail:
			return errors.New("injected failure")
		case testCmdHang:
			select {
			case <-ctx.Done():
			case <-s.release:
			}
		case nbdCmdRead:
			if !inRange {
				errno = errnoEINVAL
				break
			}
			s.mu.Lock()
			reply = append(payload[:0], s.data[off:off+uint64(length)]...)
			s.mu.Unlock()
			payload = reply
		case nbdCmdWrite:
			payload = append(payload[:0], make([]byte, length)...)
			if _, err := io.ReadFull(conn, payload); err != nil {
				return fmt.Errorf("read write payload: %w", err)
			}
			if !inRange {
				errno = errnoEINVAL
				break
			}
			s.mu.Lock()
			copy(s.data[off:], payload)
			s.mu.Unlock()
		case nbdCmdTrim, nbdCmdWriteZeroes:
			if !inRange {
				errno = errnoEINVAL
				break
			}
			s.mu.Lock()
			clear(s.data[off : off+uint64(length)])
			s.mu.Unlock()
		case nbdCmdFlush:
			s.flushes.Add(1)
		default:
			errno = errnoEINVAL
		}
		var hdr [nbdReplyLen]byte
		binary.BigEndian.PutUint32(hdr[0:], nbdReplyMagic)
		binary.BigEndian.PutUint32(hdr[4:], errno)
		copy(hdr[8:], handle)
		if _, err := conn.Write(hdr[:]); err != nil {
			return fmt.Errorf("write reply: %w", err)
		}
		if errno == 0 && reply != nil {
			if _, err := conn.Write(reply); err != nil {
				return fmt.Errorf("write reply: %w", err)
			}
		}
	}
}

// encodeRequest builds an NBD request as the kernel sends it.
func encodeRequest(typ uint16, handle, off uint64, length uint32) []byte {
	b := make([]byte, nbdRequestLen)
	binary.BigEndian.PutUint32(b[0:], nbdRequestMagic)
	binary.BigEndian.PutUint16(b[6:], typ)
	binary.BigEndian.PutUint64(b[8:], handle)
	binary.BigEndian.PutUint64(b[16:], off)
	binary.BigEndian.PutUint32(b[24:], length)
	return b
}
