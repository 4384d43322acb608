//go:build linux

package rawlink

import (
	"encoding/binary"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
)

// The socket filter's verdicts: a snap length big enough for any frame, or
// zero to drop.
const (
	filterAccept = 0x40000
	filterDrop   = 0
)

// rawFilter assembles the classic BPF program the socket runs on every
// frame before queueing it. It keeps untagged AoE frames the interface
// received and drops the host's own outgoing frames and frames from other
// VLANs.
//
// Without a VLAN device for it, the kernel strips an 802.1Q tag before the
// filter runs and marks the frame PACKET_OTHERHOST: so a group-addressed
// frame, or one addressed to mac, that is marked so came from a VLAN. (One
// addressed to another station cannot be told from an untagged one seen in
// promiscuous mode; it is kept.)
func rawFilter(mac aoe.MAC) ([]bpf.RawInstruction, error) {
	const (
		eth    = 9  // index of the aoe.EtherType check
		accept = 16 // index of the accepting return
		drop   = 17 // index of the dropping return
	)
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: drop - 2},
		/* 2 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.PACKET_OTHERHOST, SkipTrue: eth - 3},
		/* 3 */ bpf.LoadAbsolute{Off: 0, Size: 1},
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x01, SkipTrue: drop - 5},
		/* 5 */ bpf.LoadAbsolute{Off: 2, Size: 4},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: binary.BigEndian.Uint32(mac[2:6]), SkipTrue: eth - 7},
		/* 7 */ bpf.LoadAbsolute{Off: 0, Size: 2},
		/* 8 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(binary.BigEndian.Uint16(mac[0:2])), SkipTrue: drop - 9},
		/* 9 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: aoe.EtherType, SkipTrue: drop - 11},
		// A tag the kernel kept aside: only VLAN 0 (priority only) is ours.
		/* 11 */ bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: accept - 13},
		/* 13 */ bpf.LoadExtension{Num: bpf.ExtVLANTag},
		/* 14 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: 0x0fff},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 0, SkipTrue: drop - 16},
		/* 16 */ bpf.RetConstant{Val: filterAccept},
		/* 17 */ bpf.RetConstant{Val: filterDrop},
	}
	return bpf.Assemble(prog)
}

// vlanFilter assembles the socket filter of a link on VLAN vid, bound to
// every protocol. It keeps AoE frames the interface received with an
// 802.1Q tag of vid and drops the rest: the host's own frames, untagged
// frames and other VLANs'.
//
// The kernel has taken the outermost tag out of the frame and set it
// aside, where the filter reads it with the VLAN extensions. A tag with
// VLAN ID 0 only carries a priority: Linux then takes the next tag, still
// in the frame, for the VLAN, and so does the filter.
func vlanFilter(vid uint16) ([]bpf.RawInstruction, error) {
	const (
		inFrame = 10 // index of the in-frame tag checks
		inner   = 17 // index of the aoe.EtherType check of an untagged frame
		accept  = 19 // index of the accepting return
		drop    = 20 // index of the dropping return
	)
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtType},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: unix.PACKET_OUTGOING, SkipTrue: drop - 2},
		/* 2 */ bpf.LoadExtension{Num: bpf.ExtVLANTagPresent},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: inFrame - 4},
		/* 4 */ bpf.LoadExtension{Num: bpf.ExtVLANTag},
		/* 5 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanIDMask},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0, SkipTrue: inFrame - 7},
		/* 7 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(vid), SkipTrue: drop - 8},
		/* 8 */ bpf.LoadExtension{Num: bpf.ExtVLANProto},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: vlanTPID, SkipTrue: inner - 10, SkipFalse: drop - 10},
		// The tag is still in the frame.
		/* 10 */ bpf.LoadAbsolute{Off: vlanTagOff, Size: 2},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: vlanTPID, SkipTrue: drop - 12},
		/* 12 */ bpf.LoadAbsolute{Off: vlanTagOff + 2, Size: 2},
		/* 13 */ bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: vlanIDMask},
		/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(vid), SkipTrue: drop - 15},
		/* 15 */ bpf.LoadAbsolute{Off: vlanInnerET, Size: 2},
		/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: aoe.EtherType, SkipTrue: accept - 17, SkipFalse: drop - 17},
		// The tag was set aside.
		/* 17 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 18 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: aoe.EtherType, SkipTrue: accept - 19, SkipFalse: drop - 19},
		/* 19 */ bpf.RetConstant{Val: filterAccept},
		/* 20 */ bpf.RetConstant{Val: filterDrop},
	}
	return bpf.Assemble(prog)
}
