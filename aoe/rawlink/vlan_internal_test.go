//go:build linux

package rawlink

import (
	"bytes"
	"encoding/binary"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
)

// testControl returns the control messages a packet socket with
// PACKET_AUXDATA on gets: an unrelated message first when extra is set,
// then the auxdata.
func testControl(extra bool, status uint32, tci, tpid uint16) []byte {
	var ctl []byte
	put := func(level, typ int32, data []byte) {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = level, typ
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		ctl = append(ctl, b...)
	}
	if extra {
		put(unix.SOL_SOCKET, unix.SO_TIMESTAMP, make([]byte, 16))
	}
	aux := unix.TpacketAuxdata{Status: status, Vlan_tci: tci, Vlan_tpid: tpid}
	put(unix.SOL_PACKET, unix.PACKET_AUXDATA, unsafe.Slice((*byte)(unsafe.Pointer(&aux)), sizeofAuxdata))
	return ctl
}

const auxTagged = unix.TP_STATUS_USER | unix.TP_STATUS_VLAN_VALID | unix.TP_STATUS_VLAN_TPID_VALID

// testAoEFrame returns an untagged AoE frame of size bytes.
func testAoEFrame(size int) []byte {
	f := make([]byte, size)
	for i := range f {
		f[i] = byte(i * 7)
	}
	binary.BigEndian.PutUint16(f[12:14], aoe.EtherType)
	return f
}

// withTag inserts a tag after the addresses.
func withTag(f []byte, tpid, tci uint16) []byte {
	t := append([]byte(nil), f[:vlanTagOff]...)
	t = binary.BigEndian.AppendUint16(t, tpid)
	t = binary.BigEndian.AppendUint16(t, tci)
	return append(t, f[vlanTagOff:]...)
}

// readInto splits frame as a VLAN link's recvmmsg does: into a buffer of
// bufLen bytes and a spill of vlanTagLen.
func readInto(frame []byte, bufLen int) (b, spill []byte) {
	b, spill = make([]byte, bufLen), make([]byte, vlanTagLen)
	n := copy(b, frame)
	copy(spill, frame[n:])
	return b, spill
}

func TestUntagFrame(t *testing.T) {
	plain := testAoEFrame(100)
	ipv4 := testAoEFrame(100)
	binary.BigEndian.PutUint16(ipv4[12:14], 0x0800)
	tests := []struct {
		name   string
		frame  []byte // as received
		ctl    []byte
		bufLen int
		want   []byte // nil: dropped
	}{
		{"tag set aside", plain, testControl(false, auxTagged, 42, vlanTPID), 100, plain},
		{"tag set aside, priority 7", plain, testControl(true, auxTagged, 7<<13|42, vlanTPID), 100, plain},
		{"tag set aside, no TPID reported", plain, testControl(false, unix.TP_STATUS_VLAN_VALID, 42, 0), 100, plain},
		{"tag set aside, truncated", plain, testControl(false, auxTagged, 42, vlanTPID), 60, plain},
		{"other VLAN", plain, testControl(false, auxTagged, 43, vlanTPID), 100, nil},
		{"802.1ad tag", plain, testControl(false, auxTagged, 42, 0x88a8), 100, nil},
		{"not AoE", ipv4, testControl(false, auxTagged, 42, vlanTPID), 100, nil},
		{"untagged", plain, testControl(false, unix.TP_STATUS_USER, 0, 0), 100, nil},
		{"tag in frame", withTag(plain, vlanTPID, 42), nil, 100, plain},
		{"tag in frame, no auxdata", withTag(plain, vlanTPID, 42), testControl(false, unix.TP_STATUS_USER, 0, 0), 100, plain},
		{"tag in frame behind a priority tag", withTag(plain, vlanTPID, 42), testControl(false, auxTagged, 5<<13, vlanTPID), 100, plain},
		{"tag in frame, larger buffer", withTag(plain, vlanTPID, 42), nil, 200, plain},
		{"tag in frame, truncated", withTag(plain, vlanTPID, 42), nil, 50, plain},
		{"tag in frame, buffer of 15", withTag(plain, vlanTPID, 42), nil, 15, plain},
		{"tag in frame, buffer of 13", withTag(plain, vlanTPID, 42), nil, 13, plain},
		{"tag in frame, buffer of 5", withTag(plain, vlanTPID, 42), nil, 5, plain},
		{"tag in frame, other VLAN", withTag(plain, vlanTPID, 41), nil, 100, nil},
		{"tag in frame, 802.1ad", withTag(plain, 0x88a8, 42), nil, 100, nil},
		{"tag in frame, not AoE", withTag(ipv4, vlanTPID, 42), nil, 100, nil},
		{"two tags in frame", withTag(withTag(plain, vlanTPID, 42), vlanTPID, 42), nil, 100, nil},
		{"in-frame tag too short", withTag(plain, vlanTPID, 42)[:17], nil, 100, nil},
		{"untagged, no auxdata", plain, nil, 100, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, spill := readInto(tt.frame, tt.bufLen)
			size, ok := untagFrame(b, spill, len(tt.frame), tt.ctl, 42)
			if tt.want == nil {
				if ok {
					t.Fatalf("untagFrame kept the frame (%d bytes)", size)
				}
				return
			}
			if !ok {
				t.Fatal("untagFrame dropped the frame")
			}
			if size != len(tt.want) {
				t.Errorf("size = %d, want %d", size, len(tt.want))
			}
			n := min(size, len(b))
			if !bytes.Equal(b[:n], tt.want[:n]) {
				t.Errorf("frame\n% x\nwant\n% x", b[:n], tt.want[:n])
			}
		})
	}
}

func TestAuxVLAN(t *testing.T) {
	tests := []struct {
		name      string
		ctl       []byte
		tci, tpid uint16
		tagged    bool
	}{
		{"none", nil, 0, 0, false},
		{"no tag", testControl(false, unix.TP_STATUS_USER, 0, 0), 0, 0, false},
		{"tag", testControl(false, auxTagged, 0x2042, 0x8100), 0x2042, 0x8100, true},
		{"after another message", testControl(true, auxTagged, 7, 0x88a8), 7, 0x88a8, true},
		{"old kernel", testControl(false, unix.TP_STATUS_VLAN_VALID, 9, 0), 9, 0x8100, true},
		{"cut short", testControl(false, auxTagged, 9, 0x8100)[:unix.CmsgLen(0)+8], 0, 0, false},
	}
	for _, tt := range tests {
		tci, tpid, tagged := auxVLAN(tt.ctl)
		if tci != tt.tci || tpid != tt.tpid || tagged != tt.tagged {
			t.Errorf("%s: auxVLAN = %#x, %#x, %v; want %#x, %#x, %v", tt.name, tci, tpid, tagged, tt.tci, tt.tpid, tt.tagged)
		}
	}
}

// FuzzUntagFrame checks that untagFrame never reads or writes out of
// bounds, and that what it keeps is the frame without its tag.
func FuzzUntagFrame(f *testing.F) {
	plain := testAoEFrame(64)
	f.Add(plain, 64, true, uint16(42), uint16(vlanTPID), uint16(42))
	f.Add(withTag(plain, vlanTPID, 42), 64, false, uint16(0), uint16(0), uint16(42))
	f.Add(withTag(plain, vlanTPID, 42), 20, true, uint16(0), uint16(vlanTPID), uint16(42))
	f.Add(withTag(plain, vlanTPID, 42), 3, false, uint16(0), uint16(0), uint16(42))
	f.Add(withTag(plain, 0x88a8, 42), 64, false, uint16(0), uint16(0), uint16(42))
	f.Fuzz(func(t *testing.T, frame []byte, bufLen int, aux bool, tci, tpid, vid uint16) {
		if bufLen < 0 || bufLen > 2*len(frame)+20 {
			return
		}
		var ctl []byte
		if aux {
			ctl = testControl(tci&1 != 0, auxTagged, tci, tpid)
		}
		b, spill := readInto(frame, bufLen)
		size, ok := untagFrame(b, spill, len(frame), ctl, vid)
		if !ok {
			return
		}
		want := frame
		if !aux || tci&vlanIDMask == 0 {
			want = append(append([]byte(nil), frame[:vlanTagOff]...), frame[vlanInnerET:]...)
		}
		if size != len(want) {
			t.Fatalf("size = %d, want %d", size, len(want))
		}
		// What the buffer held of the frame, without the tag.
		n := min(size, len(b), max(min(len(frame), bufLen+vlanTagLen)-vlanTagLen, min(bufLen, vlanTagOff)))
		if !aux || tci&vlanIDMask == 0 {
			if !bytes.Equal(b[:n], want[:n]) {
				t.Fatalf("frame\n% x\nwant\n% x", b[:n], want[:n])
			}
		} else if !bytes.Equal(b[:min(size, len(b))], want[:min(size, len(b))]) {
			t.Fatal("a frame whose tag was set aside changed")
		}
	})
}

// FuzzAuxVLAN feeds auxVLAN arbitrary control buffers.
func FuzzAuxVLAN(f *testing.F) {
	f.Add(testControl(false, auxTagged, 42, vlanTPID))
	f.Add(testControl(true, auxTagged, 42, vlanTPID))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, ctl []byte) {
		auxVLAN(ctl)
	})
}
