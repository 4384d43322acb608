package nbd

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
)

// twoExports serves "a" (1 MiB, described) and "b" (2 MiB, read-only).
func twoExports(t *testing.T) (*ExportMap, string) {
	var ex ExportMap
	ex.Add("a", "disk A", nbdtest.NewMemory(1<<20))
	ex.Add("b", "", nbdtest.NewReadOnlyMemory(make([]byte, 2<<20)))
	return &ex, serveUnix(t, &Server{Exports: &ex})
}

func TestHandshakeOptions(t *testing.T) {
	_, path := twoExports(t)
	tests := []struct {
		name string
		opt  uint32
		data []byte
		want uint32 // reply type
	}{
		{"unknown option", 42, []byte("xyz"), repErrUnsup},
		{"starttls", optStartTLS, nil, repErrUnsup},
		{"list with data", optList, []byte{1}, repErrInvalid},
		{"structured reply with data", optStructuredReply, []byte{1}, repErrInvalid},
		{"info unknown export", optInfo, goOption("nope"), repErrUnknown},
		{"go unknown export", optGo, goOption("nope"), repErrUnknown},
		{"info too short", optInfo, []byte{0, 0, 0}, repErrInvalid},
		{"info name length past data", optInfo, append(be32(100), 'a', 0, 0), repErrInvalid},
		{"info request count mismatch", optInfo, append(goOption("a"), 0), repErrInvalid},
		{"info name too long", optInfo, goOption(strings.Repeat("x", 5000)), repErrInvalid},
		{"oversize option", 42, make([]byte, 100<<10), repErrTooBig},
		{"default export ambiguous", optGo, goOption(""), repErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, path)
			r.greet(clientFixedNewstyle | clientNoZeroes)
			r.option(tt.opt, tt.data)
			typ, _ := r.optionReply(tt.opt)
			if typ != tt.want {
				t.Fatalf("reply %#x, want %#x", typ, tt.want)
			}
			// The session survives an error reply.
			if size, _ := r.goInto("a"); size != 1<<20 {
				t.Fatalf("size after error %d", size)
			}
		})
	}
}

func TestHandshakeList(t *testing.T) {
	_, path := twoExports(t)
	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle)
	r.option(optList, nil)
	var got []string
	for {
		typ, data := r.optionReply(optList)
		if typ == repAck {
			break
		}
		if typ != repServer {
			t.Fatalf("reply %#x", typ)
		}
		n := binary.BigEndian.Uint32(data)
		got = append(got, string(data[4:4+n])+"|"+string(data[4+n:]))
	}
	if want := []string{"a|disk A", "b|"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("list %q, want %q", got, want)
	}

	// The exported List helper agrees.
	list, err := List(t.Context(), dialRaw(t, path).c)
	if err != nil || len(list) != 2 || list[0] != (ExportInfo{"a", "disk A"}) {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestHandshakeAbort(t *testing.T) {
	_, path := twoExports(t)
	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle)
	r.option(optAbort, []byte("ignored"))
	if typ, _ := r.optionReply(optAbort); typ != repAck {
		t.Fatalf("reply %#x", typ)
	}
	r.expectClosed()
}

func TestHandshakeInfoThenGo(t *testing.T) {
	_, path := twoExports(t)
	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle | clientNoZeroes)
	r.option(optStructuredReply, nil)
	if typ, _ := r.optionReply(optStructuredReply); typ != repAck {
		t.Fatalf("structured reply: %#x", typ)
	}
	r.option(optInfo, goOption("a", infoName, infoDescription, infoBlockSize, 999))
	infos := map[uint16][]byte{}
	for {
		typ, data := r.optionReply(optInfo)
		if typ == repAck {
			break
		}
		if typ != repInfo {
			t.Fatalf("reply %#x", typ)
		}
		infos[binary.BigEndian.Uint16(data)] = data[2:]
	}
	exp := infos[infoExport]
	if len(exp) != 10 || binary.BigEndian.Uint64(exp) != 1<<20 {
		t.Fatalf("export info % x", exp)
	}
	wantFlags := FlagHasFlags | FlagSendFlush | FlagSendFUA | FlagSendTrim | FlagSendWriteZeroes | FlagCanMultiConn | FlagSendDF
	if f := binary.BigEndian.Uint16(exp[8:]); f != wantFlags {
		t.Fatalf("flags %#x, want %#x", f, wantFlags)
	}
	if string(infos[infoName]) != "a" || string(infos[infoDescription]) != "disk A" {
		t.Fatalf("name %q description %q", infos[infoName], infos[infoDescription])
	}
	bs := infos[infoBlockSize]
	if len(bs) != 12 || binary.BigEndian.Uint32(bs) != 1 || binary.BigEndian.Uint32(bs[4:]) != 4096 || binary.BigEndian.Uint32(bs[8:]) != 32<<20 {
		t.Fatalf("block size % x", bs)
	}
	// GO on the read-only export after INFO on another one.
	size, flags := r.goInto("b")
	if size != 2<<20 || flags&FlagReadOnly == 0 || flags&FlagSendTrim != 0 {
		t.Fatalf("GO b: size %d flags %#x", size, flags)
	}
	r.request(0, cmdRead, 7, 0, 512, nil)
	h := r.recv(structuredReplyLen)
	if binary.BigEndian.Uint32(h) != magicStructuredRep || binary.BigEndian.Uint16(h[6:]) != replyTypeOffsetData {
		t.Fatalf("structured read reply % x", h)
	}
}

func TestHandshakeExportName(t *testing.T) {
	_, path := twoExports(t)
	for _, tt := range []struct {
		name        string
		clientFlags uint32
		trailer     int
	}{
		{"no zeroes", clientFixedNewstyle | clientNoZeroes, 0},
		{"with zeroes", clientFixedNewstyle, exportNameZeroesLen},
		{"not fixed", 0, exportNameZeroesLen},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, path)
			r.greet(tt.clientFlags)
			r.option(optExportName, []byte("a"))
			got := r.recv(10 + tt.trailer)
			if binary.BigEndian.Uint64(got) != 1<<20 || !bytes.Equal(got[10:], make([]byte, tt.trailer)) {
				t.Fatalf("export reply % x", got[:10])
			}
			r.request(0, cmdRead, 1, 0, 4, nil)
			if errno, cookie := r.simpleReply(); errno != 0 || cookie != 1 {
				t.Fatalf("read: errno %d cookie %d", errno, cookie)
			}
			r.recv(4)
		})
	}
}

func TestHandshakeDropsConnection(t *testing.T) {
	_, path := twoExports(t)
	tests := []struct {
		name string
		run  func(r *rawConn)
	}{
		{"unknown client flags", func(r *rawConn) { r.greet(1 << 5) }},
		{"bad option magic", func(r *rawConn) {
			r.greet(clientFixedNewstyle)
			r.send(be64(0x1234), be32(optList), be32(0))
		}},
		{"unknown export by name", func(r *rawConn) {
			r.greet(clientFixedNewstyle)
			r.option(optExportName, []byte("nope"))
		}},
		{"huge option", func(r *rawConn) {
			r.greet(clientFixedNewstyle)
			r.send(be64(magicOption), be32(42), be32(1<<30))
		}},
		{"huge export name", func(r *rawConn) {
			r.greet(clientFixedNewstyle)
			r.send(be64(magicOption), be32(optExportName), be32(1<<20))
		}},
		{"truncated option", func(r *rawConn) {
			r.greet(clientFixedNewstyle)
			r.send(be64(magicOption), be32(optGo), be32(100), []byte("abc"))
			r.c.(interface{ CloseWrite() error }).CloseWrite()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, path)
			tt.run(r)
			r.expectClosed()
		})
	}
}

func TestHandshakeDefaultExport(t *testing.T) {
	var ex ExportMap
	ex.Add("only", "", nbdtest.NewMemory(4096))
	path := serveUnix(t, &Server{Exports: &ex})
	c := dialClient(t, path, ClientConfig{})
	if c.Name() != "only" || c.Size() != 4096 {
		t.Fatalf("default export: name %q size %d", c.Name(), c.Size())
	}
}

func TestHandshakeTimeout(t *testing.T) {
	var ex ExportMap
	ex.Add("a", "", nbdtest.NewMemory(4096))
	path := serveUnix(t, &Server{Exports: &ex, HandshakeTimeout: 100 * time.Millisecond})
	r := dialRaw(t, path)
	r.greet(clientFixedNewstyle)
	start := time.Now()
	r.expectClosed()
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func TestParseInfoRequest(t *testing.T) {
	r, err := parseInfoRequest(goOption("disk", infoBlockSize, infoName, 77))
	if err != nil || r.name != "disk" || !r.wantBlockSize || !r.wantName || r.wantDescription {
		t.Fatalf("parse = %+v, %v", r, err)
	}
}
