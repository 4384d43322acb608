package nbd

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
)

// scriptConn is a connection whose peer sends a fixed script and then hangs
// up, and which swallows everything written to it. Unlike net.Pipe, it lets
// the server act on the whole script, so fuzzing reaches the replies of
// later messages; the server must still come back from every script.
type scriptConn struct {
	r *bytes.Reader
}

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return nil }
func (c *scriptConn) RemoteAddr() net.Addr             { return nil }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

func fuzzServer() *Server {
	var ex ExportMap
	ex.Add("a", "disk", nbdtest.NewMemory(64<<10))
	ex.Add("ro", "", nbdtest.NewReadOnlyMemory(make([]byte, 4096)))
	return &Server{Exports: &ex, MaxInFlight: 4, Logger: slog.New(slog.DiscardHandler)}
}

// mustReturn runs serve and fails the test if it does not return promptly.
func mustReturn(t *testing.T, serve func(ctx context.Context) error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		serve(context.Background())
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("server hung on the input")
	}
}

// option encodes a client option.
func option(opt uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicOption)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

// request encodes a transmission request.
func encodeRequest(flags, typ uint16, off uint64, length uint32, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, magicRequest)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, typ)
	b = binary.BigEndian.AppendUint64(b, 0xc0ffee)
	b = binary.BigEndian.AppendUint64(b, off)
	b = binary.BigEndian.AppendUint32(b, length)
	return append(b, payload...)
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func FuzzHandshake(f *testing.F) {
	flags := be32(clientFixedNewstyle | clientNoZeroes)
	f.Add(concat(flags, option(optList, nil), option(optAbort, nil)))
	f.Add(concat(flags, option(optStructuredReply, nil), option(optInfo, goOption("a", infoName, infoBlockSize)), option(optGo, goOption("ro"))))
	f.Add(concat(be32(0), option(optExportName, []byte("a")), encodeRequest(0, cmdRead, 0, 512, nil)))
	f.Add(concat(flags, option(optGo, goOption("")), encodeRequest(0, cmdDisc, 0, 0, nil)))
	f.Add(concat(flags, option(99, []byte("junk")), option(optGo, goOption("nope"))))
	f.Add(concat(flags, option(optInfo, []byte{0xff, 0xff, 0xff, 0xff, 0, 0})))
	f.Add(concat(flags, be64(magicOption), be32(optGo), be32(1<<31)))
	f.Add([]byte("NBDMAGIC garbage"))
	f.Fuzz(func(t *testing.T, script []byte) {
		srv := fuzzServer()
		mustReturn(t, func(ctx context.Context) error {
			return srv.ServeConn(ctx, &scriptConn{bytes.NewReader(script)})
		})
	})
}

func FuzzRequest(f *testing.F) {
	handshake := concat(be32(clientFixedNewstyle|clientNoZeroes), option(optStructuredReply, nil), option(optGo, goOption("a")))
	seeds := [][]byte{
		concat(encodeRequest(cmdFlagFUA, cmdWrite, 0, 4, []byte("abcd")), encodeRequest(0, cmdRead, 0, 4, nil), encodeRequest(0, cmdDisc, 0, 0, nil)),
		concat(encodeRequest(0, cmdFlush, 0, 0, nil), encodeRequest(cmdFlagNoHole, cmdWriteZeroes, 4096, 8192, nil), encodeRequest(0, cmdTrim, 0, 512, nil)),
		concat(encodeRequest(0, cmdWrite, 60<<10, 8<<10, make([]byte, 8<<10)), encodeRequest(cmdFlagDF, cmdRead, 1<<40, 1, nil)),
		concat(encodeRequest(0, cmdCache, 0, 100, nil), encodeRequest(0xffff, 99, 0, 0, nil), encodeRequest(0, cmdWrite, 0, 1<<30, nil)),
		encodeRequest(0, cmdWrite, 0, 100, []byte("short")),
		[]byte{0x25, 0x60, 0x95},
	}
	for _, s := range seeds {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, withHandshake bool, script []byte) {
		srv := fuzzServer()
		if withHandshake {
			// Structured replies on the writable export.
			mustReturn(t, func(ctx context.Context) error {
				return srv.ServeConn(ctx, &scriptConn{bytes.NewReader(concat(handshake, script))})
			})
			return
		}
		mustReturn(t, func(ctx context.Context) error {
			return srv.ServeTransmission(ctx, &scriptConn{bytes.NewReader(script)}, nbdtest.NewMemory(64<<10))
		})
	})
}
