//go:build linux

package rawlink

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
)

// sizeofAuxdata is the size of struct tpacket_auxdata.
const sizeofAuxdata = int(unsafe.Sizeof(unix.TpacketAuxdata{}))

// auxVLAN finds the VLAN tag the kernel set aside in the PACKET_AUXDATA
// control message among the control messages in ctl. tagged is false when
// there is none, or no tag was set aside. Kernels that do not report the
// tag protocol identifier only ever set aside 802.1Q tags.
func auxVLAN(ctl []byte) (tci, tpid uint16, tagged bool) {
	for len(ctl) >= unix.SizeofCmsghdr {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
		if h.Len < unix.SizeofCmsghdr || uint64(h.Len) > uint64(len(ctl)) {
			return 0, 0, false
		}
		size := int(h.Len)
		if h.Level == unix.SOL_PACKET && h.Type == unix.PACKET_AUXDATA && size >= unix.CmsgLen(sizeofAuxdata) {
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&ctl[unix.CmsgLen(0)]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID == 0 {
				return 0, 0, false
			}
			tpid = vlanTPID
			if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				tpid = aux.Vlan_tpid
			}
			return aux.Vlan_tci, tpid, true
		}
		ctl = ctl[min(unix.CmsgSpace(size-unix.CmsgLen(0)), len(ctl)):]
	}
	return 0, 0, false
}

// untagFrame turns a frame a link on VLAN vid read into the untagged frame
// it carries, in place. The frame's first bytes are in b and the next ones,
// up to vlanTagLen of them, in spill (the two iovecs it was read into);
// size is its whole length and ctl the control messages that came with it.
// It returns the untagged frame's whole length, which exceeds len(b) when
// the frame was truncated, or false when the frame is not one of VLAN vid
// (which the socket filter should have dropped).
//
// Linux normally takes the tag out of the frame and reports it as auxdata;
// a tag with VLAN ID 0 (a priority tag) is a VLAN tag's outer one, and the
// VLAN tag is then still in the frame, as it is on kernels that do not set
// tags aside.
func untagFrame(b, spill []byte, size int, ctl []byte, vid uint16) (int, bool) {
	tci, tpid, tagged := auxVLAN(ctl)
	return untagFrameTagged(b, spill, size, tci, tpid, tagged, vid)
}

// untagFrameTagged is untagFrame for a frame whose set-aside tag, if any
// (tagged), is given: tci and tpid, as a receive ring's slot reports them.
func untagFrameTagged(b, spill []byte, size int, tci, tpid uint16, tagged bool, vid uint16) (int, bool) {
	if tagged && tci&vlanIDMask != 0 {
		if tpid != vlanTPID || tci&vlanIDMask != vid || size < aoe.EthernetHeaderLen {
			return 0, false
		}
		if len(b) >= aoe.EthernetHeaderLen && binary.BigEndian.Uint16(b[12:14]) != aoe.EtherType {
			return 0, false
		}
		return size, true
	}

	// The tag is in the frame, at vlanTagOff.
	if size < vlanInnerET+2 {
		return 0, false
	}
	stored := min(size, len(b)+len(spill))
	at := func(i int) byte {
		if i < len(b) {
			return b[i]
		}
		return spill[i-len(b)]
	}
	// A buffer too small to hold the tag's fields leaves them to the
	// filter's check.
	if stored >= vlanInnerET+2 {
		u16 := func(i int) uint16 { return uint16(at(i))<<8 | uint16(at(i+1)) }
		if u16(vlanTagOff) != vlanTPID || u16(vlanTagOff+2)&vlanIDMask != vid || u16(vlanInnerET) != aoe.EtherType {
			return 0, false
		}
	}
	// Untagged byte i is the frame's byte i+vlanTagLen, for i from
	// vlanTagOff up to end: from b as far as it reaches, then from spill.
	end := min(stored-vlanTagLen, len(b))
	if end > vlanTagOff {
		fromB := min(end+vlanTagLen, len(b))
		if fromB > vlanInnerET {
			copy(b[vlanTagOff:], b[vlanInnerET:fromB])
		}
		if lo := max(vlanInnerET, len(b)); end+vlanTagLen > lo {
			copy(b[lo-vlanTagLen:end], spill[lo-len(b):end+vlanTagLen-len(b)])
		}
	}
	return size - vlanTagLen, true
}
