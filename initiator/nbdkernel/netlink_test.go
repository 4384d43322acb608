package nbdkernel

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// unhex decodes golden hex laid out one attribute a line; spaces are
// ignored and a '|' starts a comment that runs to the end of the line.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	var sb strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "|")
		sb.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatalf("bad golden hex: %v", err)
	}
	return b
}

// skipBigEndian skips golden tests: netlink integers are in host order and
// the goldens are written for little-endian hosts.
func skipBigEndian(t testing.TB) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("golden attribute bytes are little-endian")
	}
}

// Goldens follow nbd-netlink.h's numbering: each attribute is nla_len (u16,
// header included), nla_type (u16; 0x8000 marks a nested attribute) and the
// value padded to 4 bytes.
const (
	goldenConnect = `
		08 00 01 00  03 00 00 00                 | INDEX 3
		0c 00 02 00  00 00 10 00 00 00 00 00     | SIZE_BYTES 1 MiB
		0c 00 03 00  00 02 00 00 00 00 00 00     | BLOCK_SIZE_BYTES 512
		0c 00 04 00  1e 00 00 00 00 00 00 00     | TIMEOUT 30 s
		0c 00 08 00  0a 00 00 00 00 00 00 00     | DEAD_CONN_TIMEOUT 10 s
		0c 00 05 00  0d 00 00 00 00 00 00 00     | SERVER_FLAGS HAS_FLAGS|SEND_FLUSH|SEND_FUA
		0c 00 06 00  02 00 00 00 00 00 00 00     | CLIENT_FLAGS DISCONNECT_ON_CLOSE
		0d 00 0a 00  61 6f 65 3a 65 31 2e 32 00 00 00 00 | BACKEND_IDENTIFIER "aoe:e1.2\0"
		1c 00 07 80                              | SOCKETS (nested)
		0c 00 01 80  08 00 01 00  05 00 00 00    |   SOCK_ITEM { SOCK_FD 5 }
		0c 00 01 80  08 00 01 00  06 00 00 00    |   SOCK_ITEM { SOCK_FD 6 }`
	goldenConnectMinimal = `
		0c 00 02 00  00 00 00 40 00 00 00 00     | SIZE_BYTES 1 GiB (no INDEX: any device)
		0c 00 03 00  00 10 00 00 00 00 00 00     | BLOCK_SIZE_BYTES 4096
		0c 00 05 00  01 00 00 00 00 00 00 00     | SERVER_FLAGS HAS_FLAGS
		0c 00 06 00  00 00 00 00 00 00 00 00     | CLIENT_FLAGS 0
		10 00 07 80                              | SOCKETS
		0c 00 01 80  08 00 01 00  04 00 00 00    |   SOCK_ITEM { SOCK_FD 4 }`
	goldenReconfigure = `
		08 00 01 00  07 00 00 00                 | INDEX 7
		10 00 07 80                              | SOCKETS
		0c 00 01 80  08 00 01 00  09 00 00 00    |   SOCK_ITEM { SOCK_FD 9 }`
	goldenReconfigureBackend = `
		08 00 01 00  07 00 00 00                 | INDEX 7
		06 00 0a 00  78 00 00 00                 | BACKEND_IDENTIFIER "x\0"
		1c 00 07 80                              | SOCKETS
		0c 00 01 80  08 00 01 00  09 00 00 00    |   SOCK_ITEM { SOCK_FD 9 }
		0c 00 01 80  08 00 01 00  0a 00 00 00    |   SOCK_ITEM { SOCK_FD 10 }`
	goldenIndex3 = `08 00 01 00  03 00 00 00     | INDEX 3 (DISCONNECT, STATUS of one)`
	// The kernel nests the STATUS reply without NLA_F_NESTED
	// (nla_nest_start_noflag); u8 CONNECTED is padded to 8 bytes.
	goldenStatusReply = `
		2c 00 09 00                              | DEVICE_LIST
		14 00 01 00                              |   DEVICE_ITEM
		08 00 01 00  02 00 00 00                 |     DEVICE_INDEX 2
		05 00 02 00  01 00 00 00                 |     DEVICE_CONNECTED 1
		14 00 01 00                              |   DEVICE_ITEM
		08 00 01 00  05 00 00 00                 |     DEVICE_INDEX 5
		05 00 02 00  00 00 00 00                 |     DEVICE_CONNECTED 0`
	goldenLinkDead = `08 00 01 00  0b 00 00 00     | INDEX 11`
)

func TestEncodeGolden(t *testing.T) {
	skipBigEndian(t)
	tests := []struct {
		name   string
		encode func() ([]byte, error)
		want   string
	}{
		{"connect", connectRequest{
			index: 3, sizeBytes: 1 << 20, blockSizeBytes: 512,
			timeoutSec: 30, deadConnTimeoutSec: 10,
			serverFlags: 0x0d, clientFlags: ClientDisconnectOnClose,
			backend: "aoe:e1.2", fds: []int{5, 6},
		}.encode, goldenConnect},
		{"connect any index, defaults", connectRequest{
			index: AnyIndex, sizeBytes: 1 << 30, blockSizeBytes: 4096,
			serverFlags: flagHasFlags, fds: []int{4},
		}.encode, goldenConnectMinimal},
		{"reconfigure", func() ([]byte, error) { return encodeReconfigure(7, "", []int{9}) }, goldenReconfigure},
		{"reconfigure with backend", func() ([]byte, error) { return encodeReconfigure(7, "x", []int{9, 10}) }, goldenReconfigureBackend},
		{"disconnect or status of one", func() ([]byte, error) { return encodeIndex(3) }, goldenIndex3},
		{"status of all", func() ([]byte, error) { return encodeIndex(-1) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.encode()
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tt.want); !bytes.Equal(got, want) {
				t.Errorf("encoded\n got %x\nwant %x", got, want)
			}
		})
	}
}

func TestEncodeRejectsBadDescriptor(t *testing.T) {
	if _, err := encodeReconfigure(1, "", []int{-1}); err == nil {
		t.Fatal("negative descriptor encoded")
	}
}

func TestDecodeGolden(t *testing.T) {
	skipBigEndian(t)
	if got, err := decodeIndex(unhex(t, goldenLinkDead)); err != nil || got != 11 {
		t.Errorf("decodeIndex(LINK_DEAD) = %d, %v; want 11", got, err)
	}
	got, err := decodeStatus(unhex(t, goldenStatusReply))
	if err != nil {
		t.Fatal(err)
	}
	want := []DeviceStatus{{Index: 2, Connected: true}, {Index: 5}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeStatus = %+v, want %+v", got, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	skipBigEndian(t)
	tests := []struct {
		name   string
		decode func([]byte) error
		in     string
	}{
		{"index missing", decodeIndexErr, `08 00 02 00 03 00 00 00`},
		{"index too short", decodeIndexErr, `06 00 01 00 03 00 00 00`},
		{"index out of range", decodeIndexErr, `08 00 01 00 00 00 10 00`},
		{"truncated header", decodeIndexErr, `08 00`},
		{"status item without index", decodeStatusErr, `10 00 09 00 0c 00 01 00 05 00 02 00 01 00 00 00`},
		{"status connected not u8", decodeStatusErr, `18 00 09 00 14 00 01 00 08 00 01 00 02 00 00 00 08 00 02 00 01 00 00 00`},
		{"status list truncated", decodeStatusErr, `10 00 09 00 0c 00 01 00 08 00`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.decode(unhex(t, tt.in)); err == nil {
				t.Error("decoded without error")
			}
		})
	}
	if _, err := decodeIndex(nil); !errors.Is(err, errNoIndex) {
		t.Errorf("decodeIndex(nil) = %v, want errNoIndex", err)
	}
}

func decodeIndexErr(b []byte) error  { _, err := decodeIndex(b); return err }
func decodeStatusErr(b []byte) error { _, err := decodeStatus(b); return err }

func FuzzDecodeIndex(f *testing.F) {
	f.Add(unhex(f, goldenLinkDead))
	f.Add(unhex(f, goldenIndex3))
	f.Add(unhex(f, goldenConnect))
	f.Add([]byte{})
	f.Add([]byte{4, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		index, err := decodeIndex(b)
		if err != nil {
			return
		}
		if index < 0 || index > maxIndex {
			t.Fatalf("decoded out-of-range index %d", index)
		}
		enc, err := encodeIndex(index)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := decodeIndex(enc); err != nil || again != index {
			t.Fatalf("round trip of %d gave %d, %v", index, again, err)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add(unhex(f, goldenStatusReply))
	f.Add(unhex(f, goldenIndex3))
	f.Add([]byte{})
	f.Add([]byte{4, 0, 9, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		list, err := decodeStatus(b)
		if err != nil {
			return
		}
		for _, s := range list {
			if s.Index < 0 || s.Index > maxIndex {
				t.Fatalf("decoded out-of-range index %d", s.Index)
			}
		}
	})
}
