package nbd

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
)

// socketPair returns two connected Unix stream sockets, the transport the
// kernel's nbd driver uses.
func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	tb.Cleanup(func() { conns[0].Close(); conns[1].Close() })
	return conns[0], conns[1]
}

// driver is an allocation-free pipelining client for benchmarks.
type driver struct {
	c          net.Conn
	br         *bufio.Reader
	bw         *bufio.Writer
	structured bool
	hdr        [requestLen]byte
	reply      [structuredReplyLen + 8]byte
	payload    []byte
	data       []byte
}

// startDriver serves a 64 MiB memory export on a socketpair and returns a
// driver in the transmission phase.
func startDriver(tb testing.TB, structured bool, size int) *driver {
	srv := &Server{Logger: slog.New(slog.DiscardHandler)}
	mem := nbdtest.NewMemory(64 << 20)
	client, server := socketPair(tb)
	done := make(chan struct{})
	tb.Cleanup(func() { client.Close(); <-done })
	var ex ExportMap
	ex.Add("mem", "", mem)
	srv.Exports = &ex
	go func() {
		defer close(done)
		if structured {
			srv.ServeConn(tb.Context(), server)
		} else {
			srv.ServeTransmission(tb.Context(), server, mem)
		}
	}()
	d := &driver{c: client, br: bufio.NewReaderSize(client, 256<<10), bw: bufio.NewWriterSize(client, 256<<10),
		structured: structured, payload: make([]byte, size), data: make([]byte, size)}
	if structured {
		r := &rawConn{t: tb, c: client, br: d.br}
		r.greet(clientFixedNewstyle | clientNoZeroes)
		r.option(optStructuredReply, nil)
		if typ, _ := r.optionReply(optStructuredReply); typ != repAck {
			tb.Fatalf("structured replies refused: %#x", typ)
		}
		r.goInto("mem")
	}
	return d
}

// send queues one request.
func (d *driver) send(typ uint16, cookie, off uint64) error {
	h := d.hdr[:]
	binary.BigEndian.PutUint32(h[0:], magicRequest)
	binary.BigEndian.PutUint16(h[4:], 0)
	binary.BigEndian.PutUint16(h[6:], typ)
	binary.BigEndian.PutUint64(h[8:], cookie)
	binary.BigEndian.PutUint64(h[16:], off)
	binary.BigEndian.PutUint32(h[24:], uint32(len(d.payload)))
	if _, err := d.bw.Write(h); err != nil {
		return err
	}
	if typ == cmdWrite {
		_, err := d.bw.Write(d.payload)
		return err
	}
	return nil
}

// receive reads one reply and checks it succeeded.
func (d *driver) receive(typ uint16) error {
	h := d.reply[:]
	if _, err := io.ReadFull(d.br, h[:4]); err != nil {
		return err
	}
	if binary.BigEndian.Uint32(h) == magicSimpleReply {
		if _, err := io.ReadFull(d.br, h[4:simpleReplyLen]); err != nil {
			return err
		}
		if e := binary.BigEndian.Uint32(h[4:]); e != 0 {
			return Errno(e)
		}
		if typ == cmdRead {
			_, err := io.ReadFull(d.br, d.data)
			return err
		}
		return nil
	}
	if _, err := io.ReadFull(d.br, h[4:structuredReplyLen]); err != nil {
		return err
	}
	if t := binary.BigEndian.Uint16(h[6:]); t != replyTypeOffsetData {
		return fmt.Errorf("chunk type %d", t)
	}
	if _, err := io.ReadFull(d.br, h[structuredReplyLen:]); err != nil {
		return err
	}
	_, err := io.ReadFull(d.br, d.data)
	return err
}

// roundTrip sends one request and waits for its reply.
func (d *driver) roundTrip(typ uint16, off uint64) error {
	if err := d.send(typ, 1, off); err != nil {
		return err
	}
	if err := d.bw.Flush(); err != nil {
		return err
	}
	return d.receive(typ)
}

// pipeline runs n requests with up to depth in flight.
func (d *driver) pipeline(typ uint16, n, depth int) error {
	size := uint64(len(d.payload))
	slots := (64 << 20) / size
	window := make(chan struct{}, depth)
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < n; i++ {
			if err := d.receive(typ); err != nil {
				errc <- err
				return
			}
			<-window
		}
		errc <- nil
	}()
	for i := 0; i < n; i++ {
		select {
		case window <- struct{}{}:
		default:
			// About to wait for replies: push out what is queued.
			if err := d.bw.Flush(); err != nil {
				return err
			}
			window <- struct{}{}
		}
		if err := d.send(typ, uint64(i), uint64(i)%slots*size); err != nil {
			return err
		}
	}
	if err := d.bw.Flush(); err != nil {
		return err
	}
	return <-errc
}

func BenchmarkTransmission(b *testing.B) {
	for _, bb := range []struct {
		name       string
		typ        uint16
		size       int
		depth      int
		structured bool
	}{
		{"read4K/qd1", cmdRead, 4 << 10, 1, false},
		{"read4K/qd32", cmdRead, 4 << 10, 32, false},
		{"write4K/qd1", cmdWrite, 4 << 10, 1, false},
		{"write4K/qd32", cmdWrite, 4 << 10, 32, false},
		{"read128K/qd16", cmdRead, 128 << 10, 16, false},
		{"write128K/qd16", cmdWrite, 128 << 10, 16, false},
		{"read1M/qd8", cmdRead, 1 << 20, 8, false},
		{"read4K/qd32/structured", cmdRead, 4 << 10, 32, true},
		{"read128K/qd16/structured", cmdRead, 128 << 10, 16, true},
	} {
		b.Run(bb.name, func(b *testing.B) {
			d := startDriver(b, bb.structured, bb.size)
			// Warm the buffer pools.
			if err := d.pipeline(bb.typ, 2*bb.depth, bb.depth); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(bb.size))
			b.ReportAllocs()
			b.ResetTimer()
			if err := d.pipeline(bb.typ, b.N, bb.depth); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestSteadyStateAllocations checks that serving a request allocates
// nothing once the buffer pools are warm.
func TestSteadyStateAllocations(t *testing.T) {
	for _, tt := range []struct {
		name       string
		typ        uint16
		structured bool
	}{
		{"read", cmdRead, false},
		{"write", cmdWrite, false},
		{"structured read", cmdRead, true},
		{"flush", cmdFlush, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			size := 4096
			if tt.typ == cmdFlush {
				size = 0
			}
			d := startDriver(t, tt.structured, size)
			for range 10 {
				if err := d.roundTrip(tt.typ, 0); err != nil {
					t.Fatal(err)
				}
			}
			var failed error
			allocs := testing.AllocsPerRun(500, func() {
				if err := d.roundTrip(tt.typ, uint64(size)); err != nil && failed == nil {
					failed = err
				}
			})
			if failed != nil {
				t.Fatal(failed)
			}
			if allocs > 0 {
				t.Errorf("%.1f allocations per request", allocs)
			}
		})
	}
}
