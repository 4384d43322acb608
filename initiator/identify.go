package initiator

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/ironblade/ironblade/aoe"
)

// identity is what a device's IDENTIFY DEVICE data tells the initiator.
type identity struct {
	// sectors is the capacity in 512-byte sectors.
	sectors uint64
	// lba48 says the device takes the EXT (48-bit) read and write
	// commands; without it only LBA28 ones are used.
	lba48 bool
	// fua says WRITE DMA FUA EXT is supported.
	fua bool
	// flushExt says FLUSH CACHE EXT is supported.
	flushExt                bool
	model, serial, firmware string
}

// Word numbers and bits of the IDENTIFY DEVICE data this package reads
// (ATA8-ACS, table "IDENTIFY DEVICE data").
const (
	idSerial       = 10 // words 10-19, 20 characters
	idFirmware     = 23 // words 23-26, 8 characters
	idModel        = 27 // words 27-46, 40 characters
	idLBA28        = 60 // words 60-61
	idCommandSets  = 83 // support: bit 10 LBA48, bit 13 FLUSH CACHE EXT
	idFeatures     = 84 // support: bit 6 WRITE DMA FUA EXT
	idFeaturesOn   = 87 // enabled copy of word 84
	idLBA48        = 100
	bitLBA48       = 1 << 10
	bitFlushExt    = 1 << 13
	bitFUA         = 1 << 6
	validWordMask  = 0xC000 // bits 15:14 of words 83, 84 and 87
	validWordValue = 0x4000 // ... must read 01 for the word to count
)

// parseIdentify decodes IDENTIFY DEVICE data (one 512-byte sector).
func parseIdentify(b []byte) (identity, error) {
	var id identity
	if len(b) < aoe.SectorSize {
		return id, fmt.Errorf("initiator: identify: %d bytes of data, want %d", len(b), aoe.SectorSize)
	}
	word := func(n int) uint16 { return binary.LittleEndian.Uint16(b[2*n:]) }
	valid := func(n int) bool { return word(n)&validWordMask == validWordValue }
	id.lba48 = valid(idCommandSets) && word(idCommandSets)&bitLBA48 != 0
	id.flushExt = valid(idCommandSets) && word(idCommandSets)&bitFlushExt != 0
	id.fua = (valid(idFeatures) && word(idFeatures)&bitFUA != 0) || (valid(idFeaturesOn) && word(idFeaturesOn)&bitFUA != 0)
	if id.lba48 {
		id.sectors = binary.LittleEndian.Uint64(b[2*idLBA48:]) & aoe.MaxLBA
	} else {
		id.sectors = uint64(binary.LittleEndian.Uint32(b[2*idLBA28:])) & aoe.MaxLBA28
	}
	id.fua = id.fua && id.lba48 // FUA EXT is a 48-bit command
	id.serial = ataString(b, idSerial, 10)
	id.firmware = ataString(b, idFirmware, 4)
	id.model = ataString(b, idModel, 20)
	if id.sectors == 0 {
		return id, fmt.Errorf("initiator: identify: device reports no capacity")
	}
	return id, nil
}

// ataString decodes an IDENTIFY string: words of two characters, the first
// in the high byte, padded with spaces.
func ataString(b []byte, word, words int) string {
	s := make([]byte, 0, 2*words)
	for i := word; i < word+words; i++ {
		s = append(s, b[2*i+1], b[2*i])
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, string(s)))
}
