package target

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/ironblade/ironblade/aoe"
)

// IDENTIFY DEVICE word numbers and bits the target sets (ATA8-ACS).
const (
	idGeneral          = 0   // general configuration: bit 6 fixed device
	idCylinders        = 1   // legacy CHS geometry
	idHeads            = 3   //
	idSectorsPerTrack  = 6   //
	idSerial           = 10  // 20 ASCII characters
	idFirmware         = 23  // 8 ASCII characters
	idModel            = 27  // 40 ASCII characters
	idMaxMultiple      = 47  // 0x80 in the high byte, as ATA requires
	idCapabilities     = 49  // bit 9 LBA supported
	idCapabilities2    = 50  // bit 14 must be one
	idFieldValidity    = 53  // bit 0: words 54-58 valid
	idCurCylinders     = 54  //
	idCurHeads         = 55  //
	idCurSectors       = 56  //
	idCurCapacity      = 57  // words 57-58: CHS capacity in sectors
	idLBA28Capacity    = 60  // words 60-61
	idMajorVersion     = 80  // supported ATA versions
	idCommandSet1      = 82  // bit 5 write cache supported
	idCommandSet2      = 83  // bit 10 LBA48, 12 FLUSH CACHE, 13 FLUSH CACHE EXT, 14 one
	idCommandSetExt    = 84  // bit 6 WRITE FUA EXT, 14 one
	idEnabled1         = 85  // bit 5 write cache enabled
	idEnabled2         = 86  // mirrors 83
	idEnabledExt       = 87  // mirrors 84
	idLBA48Capacity    = 100 // words 100-103
	idSectorSize       = 106 // bit 14 one: word valid, one logical sector per physical
	idIntegrity        = 255 // 0xA5 signature and checksum
	maxLBA28Capacity   = 0x0FFFFFFF
	maxLegacyCylinders = 16383
)

// identifyData builds the 512-byte IDENTIFY DEVICE response of a device
// with the given capacity in sectors. Words are little-endian; strings are
// ATA strings (two characters a word, the first in the high byte, padded
// with spaces).
func identifyData(sectors uint64, serial, firmware string, writeCache bool) [aoe.SectorSize]byte {
	var d [aoe.SectorSize]byte
	put := func(word int, v uint16) { binary.LittleEndian.PutUint16(d[2*word:], v) }
	put(idGeneral, 0x0040)

	// Legacy geometry, for initiators that still look at it.
	const heads, perTrack = 16, 63
	cyl := min(sectors/(heads*perTrack), maxLegacyCylinders)
	put(idCylinders, uint16(cyl))
	put(idHeads, heads)
	put(idSectorsPerTrack, perTrack)
	put(idFieldValidity, 0x0001)
	put(idCurCylinders, uint16(cyl))
	put(idCurHeads, heads)
	put(idCurSectors, perTrack)
	chs := uint32(cyl * heads * perTrack)
	put(idCurCapacity, uint16(chs))
	put(idCurCapacity+1, uint16(chs>>16))

	putString(d[2*idSerial:2*idSerial+20], serial)
	putString(d[2*idFirmware:2*idFirmware+8], firmware)
	putString(d[2*idModel:2*idModel+40], "ironblade")

	put(idMaxMultiple, 0x8000)
	put(idCapabilities, 1<<9)
	put(idCapabilities2, 1<<14)
	lba28 := uint32(min(sectors, maxLBA28Capacity))
	put(idLBA28Capacity, uint16(lba28))
	put(idLBA28Capacity+1, uint16(lba28>>16))
	put(idMajorVersion, 0x01f0) // ATA/ATAPI-4 to ATA8-ACS
	put(idCommandSet1, 1<<5)
	put(idCommandSet2, 1<<14|1<<13|1<<12|1<<10)
	put(idCommandSetExt, 1<<14|1<<6)
	if writeCache {
		put(idEnabled1, 1<<5)
	}
	put(idEnabled2, 1<<13|1<<12|1<<10)
	put(idEnabledExt, 1<<14|1<<6)
	binary.LittleEndian.PutUint64(d[2*idLBA48Capacity:], sectors)
	put(idSectorSize, 1<<14)

	// Integrity word: signature, then a checksum that makes the sum of
	// all 512 bytes zero.
	d[2*idIntegrity] = 0xA5
	var sum byte
	for _, b := range d[:aoe.SectorSize-1] {
		sum += b
	}
	d[aoe.SectorSize-1] = -sum
	return d
}

// putString stores s in dst as an ATA string: space-padded, with the two
// bytes of each word swapped so the first character is the word's high
// byte. Characters beyond dst are cut.
func putString(dst []byte, s string) {
	for i := range dst {
		dst[i] = ' '
	}
	copy(dst, s)
	for i := 0; i+1 < len(dst); i += 2 {
		dst[i], dst[i+1] = dst[i+1], dst[i]
	}
}

// firmwareNumber reads a version such as "1.2.3" or "v1.2" as major<<8 |
// minor for the Query Config firmware field; what it cannot read is 0.
func firmwareNumber(version string) uint16 {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	num := func(s string) uint16 {
		end := 0
		for end < len(s) && s[end] >= '0' && s[end] <= '9' {
			end++
		}
		n, err := strconv.Atoi(s[:end])
		if err != nil {
			return 0
		}
		return uint16(min(n, 255))
	}
	v := num(parts[0]) << 8
	if len(parts) > 1 {
		v |= num(parts[1])
	}
	return v
}
