package aoe

import (
	"encoding/binary"
	"fmt"
)

// ATAHeaderLen is the length of the ATA argument before its data.
const ATAHeaderLen = 12

// MaxLBA is the largest LBA a 48-bit ATA command can address.
const MaxLBA = 1<<48 - 1

// MaxLBA28 is the largest LBA a 28-bit ATA command can address.
const MaxLBA28 = 1<<28 - 1

// ATAFlags are the flag bits of the ATA argument.
type ATAFlags uint8

// ATA argument flags.
const (
	// ATAFlagExtended marks an LBA48 command.
	ATAFlagExtended ATAFlags = 0x40
	// ATAFlagDevice selects the device register's DEV bit.
	ATAFlagDevice ATAFlags = 0x10
	// ATAFlagAsync asks the target to answer a write before it is done
	// (the target may ignore it).
	ATAFlagAsync ATAFlags = 0x02
	// ATAFlagWrite marks a command that carries data to the target.
	ATAFlagWrite ATAFlags = 0x01
)

// ATA command codes that AoE targets commonly implement.
const (
	ATAReadSectors     = 0x20
	ATAReadSectorsExt  = 0x24
	ATAWriteSectors    = 0x30
	ATAWriteSectorsExt = 0x34
	ATAWriteFUAExt     = 0x3D
	ATACheckPowerMode  = 0xE5
	ATAFlushCache      = 0xE7
	ATAFlushCacheExt   = 0xEA
	ATAIdentifyDevice  = 0xEC
)

// ATA status register bits, set by the target in the response's
// CmdStatus.
const (
	ATAStatusError = 0x01 // ERR: the error register says what failed
	ATAStatusDF    = 0x20 // device fault
	ATAStatusDRDY  = 0x40 // device ready
	ATAStatusBSY   = 0x80
)

// ATA error register bits, set by the target in the response's
// FeatureError when the status has ATAStatusError.
const (
	ATAErrorABRT = 0x04 // command aborted
	ATAErrorIDNF = 0x10 // address not found
	ATAErrorUNC  = 0x40 // uncorrectable data error
)

// ATA is the argument of an ATA command (CommandATA): the register values
// of an ATA command or its completion, and the data it carries.
type ATA struct {
	Flags ATAFlags
	// FeatureError is the feature register in a request and the error
	// register in a response.
	FeatureError uint8
	// SectorCount is the number of 512-byte sectors the command moves.
	SectorCount uint8
	// CmdStatus is the command register in a request and the status
	// register in a response.
	CmdStatus uint8
	// LBA is the 48-bit logical block address (6 bytes, little-endian on
	// the wire). For LBA28 commands the device register's low nibble
	// carries bits 24 to 27, so it is decoded into LBA as-is; see LBA28.
	LBA uint64
	// Data is the payload. After UnmarshalBinary it aliases the input and
	// includes any Ethernet padding: use DataLen to know how much counts.
	Data []byte
}

// IsWrite reports whether the argument has ATAFlagWrite set.
func (a *ATA) IsWrite() bool { return a.Flags&ATAFlagWrite != 0 }

// IsExtended reports whether the argument has ATAFlagExtended (LBA48) set.
func (a *ATA) IsExtended() bool { return a.Flags&ATAFlagExtended != 0 }

// DataLen reports how many bytes of data the sector count stands for.
func (a *ATA) DataLen() int { return int(a.SectorCount) * SectorSize }

// LBA28 reports the 28-bit address of an LBA28 command and whether the
// argument is one an LBA28 command may carry. The high nibble of LBA byte 3
// is the ATA device register's flag bits (the Linux driver sets 0xE0), so it
// is not part of the address; LBA bytes 4 and 5 must be zero. A target
// refuses, rather than masks, an address that does not fit.
func (a *ATA) LBA28() (lba uint64, ok bool) {
	return a.LBA & MaxLBA28, a.LBA>>32 == 0
}

// MarshalResponseHeaderTo encodes into the first ATAHeaderLen bytes of b
// the registers of a target's response to the request a: a's flags, sector
// count and LBA, with status in the status register and errReg in the
// error register. A target puts any data the response returns at
// b[ATAHeaderLen:] first. b may be the buffer a was decoded from, and must
// be at least ATAHeaderLen long.
func (a *ATA) MarshalResponseHeaderTo(b []byte, status, errReg uint8) {
	putATAHeader(b, a.Flags, errReg, a.SectorCount, status, a.LBA)
}

// Len reports the encoded length of a.
func (a *ATA) Len() int { return ATAHeaderLen + len(a.Data) }

// MarshalTo encodes a into b.
func (a *ATA) MarshalTo(b []byte) (int, error) {
	if len(b) < a.Len() {
		return 0, fmt.Errorf("aoe: marshal ATA: %w", ErrBufferTooSmall)
	}
	if a.LBA > MaxLBA {
		return 0, fmt.Errorf("aoe: marshal ATA: LBA %d: %w", a.LBA, ErrTooLong)
	}
	a.MarshalHeaderTo(b)
	copy(b[ATAHeaderLen:], a.Data)
	return a.Len(), nil
}

// MarshalHeaderTo encodes the registers of a into the first ATAHeaderLen
// bytes of b, leaving the data to the caller (so a target can read sectors
// straight into the frame). b must be at least ATAHeaderLen long.
func (a *ATA) MarshalHeaderTo(b []byte) {
	putATAHeader(b, a.Flags, a.FeatureError, a.SectorCount, a.CmdStatus, a.LBA)
}

// putATAHeader encodes the registers of an ATA argument into b, which
// holds at least ATAHeaderLen bytes.
func putATAHeader(b []byte, flags ATAFlags, featureError, count, cmdStatus uint8, lba uint64) {
	_ = b[ATAHeaderLen-1]
	b[0] = uint8(flags)
	b[1] = featureError
	b[2] = count
	b[3] = cmdStatus
	binary.LittleEndian.PutUint32(b[4:8], uint32(lba))
	binary.LittleEndian.PutUint16(b[8:10], uint16(lba>>32))
	b[10], b[11] = 0, 0
}

// MarshalBinary encodes a into a new buffer.
func (a *ATA) MarshalBinary() ([]byte, error) {
	b := make([]byte, a.Len())
	_, err := a.MarshalTo(b)
	return b, err
}

// UnmarshalBinary decodes an ATA argument. a.Data aliases b.
func (a *ATA) UnmarshalBinary(b []byte) error {
	if len(b) < ATAHeaderLen {
		return fmt.Errorf("aoe: unmarshal ATA: %d bytes: %w", len(b), ErrShort)
	}
	a.Flags = ATAFlags(b[0])
	a.FeatureError = b[1]
	a.SectorCount = b[2]
	a.CmdStatus = b[3]
	// Two loads rather than a copy into an 8-byte array: reading the
	// array back whole stalls on the narrower stores that filled it.
	a.LBA = uint64(binary.LittleEndian.Uint32(b[4:8])) | uint64(binary.LittleEndian.Uint16(b[8:10]))<<32
	a.Data = b[ATAHeaderLen:]
	return nil
}
