package target

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// ataString undoes the byte swap of an ATA string.
func ataString(b []byte) string {
	s := make([]byte, len(b))
	for i := 0; i+1 < len(b); i += 2 {
		s[i], s[i+1] = b[i+1], b[i]
	}
	return strings.TrimRight(string(s), " ")
}

func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sectors    int
		sync       bool
		wantLBA28  uint32
		writeCache bool
	}{
		{name: "small", sectors: testSectors, wantLBA28: testSectors, writeCache: true},
		{name: "sync", sectors: testSectors, sync: true, wantLBA28: testSectors},
		{name: "beyond LBA28", sectors: 0x10000000 + 8, wantLBA28: 0x0FFFFFFF, writeCache: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := &sizedDisk{memDisk: newMemDisk(1), size: int64(tc.sectors) * aoe.SectorSize}
			h := newHarness(t, withConfig(func(c *Config) {
				c.Backend = disk
				c.SyncWrites = tc.sync
				c.Version = "1.2.3"
				c.Serial = "serial-1"
			}))
			f := h.client.roundTrip(t, h.client.request(aoe.CommandATA, ataArg(t, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice})))
			checkResponse(t, f, 0)
			a := decodeATA(t, f)
			if a.CmdStatus != aoe.ATAStatusDRDY || a.FeatureError != 0 {
				t.Fatalf("status %#x error %#x", a.CmdStatus, a.FeatureError)
			}
			if len(a.Data) < 512 {
				t.Fatalf("%d bytes of identify data", len(a.Data))
			}
			id := a.Data[:512]
			word := func(i int) uint16 { return binary.LittleEndian.Uint16(id[2*i:]) }
			if got := ataString(id[54:94]); got != "ironblade" {
				t.Errorf("model %q", got)
			}
			if got := ataString(id[20:40]); got != "serial-1" {
				t.Errorf("serial %q", got)
			}
			if got := ataString(id[46:54]); got != "1.2.3" {
				t.Errorf("firmware %q", got)
			}
			if got := binary.LittleEndian.Uint32(id[120:]); got != tc.wantLBA28 {
				t.Errorf("LBA28 capacity %#x, want %#x", got, tc.wantLBA28)
			}
			if got := binary.LittleEndian.Uint64(id[200:]); got != uint64(tc.sectors) {
				t.Errorf("LBA48 capacity %d, want %d", got, tc.sectors)
			}
			for _, bit := range []struct {
				word, bit int
				want      bool
				what      string
			}{
				{83, 10, true, "LBA48 supported"}, {86, 10, true, "LBA48 enabled"},
				{83, 12, true, "FLUSH CACHE"}, {83, 13, true, "FLUSH CACHE EXT"},
				{84, 6, true, "WRITE FUA EXT"}, {83, 14, true, "word 83 valid"},
				{82, 5, true, "write cache supported"}, {85, 5, tc.writeCache, "write cache enabled"},
				{49, 9, true, "LBA"},
			} {
				if got := word(bit.word)&(1<<bit.bit) != 0; got != bit.want {
					t.Errorf("%s (word %d bit %d) = %v", bit.what, bit.word, bit.bit, got)
				}
			}
			var sum byte
			for _, b := range id {
				sum += b
			}
			if id[510] != 0xA5 || sum != 0 {
				t.Errorf("integrity word %#x, checksum %#x", id[510], sum)
			}
		})
	}
}

// sizedDisk pretends to be larger than its memory: reads beyond it are
// zeros. It lets tests see capacities beyond LBA28.
type sizedDisk struct {
	*memDisk
	size int64
}

func (d *sizedDisk) Size() int64 { return d.size }

func TestATACommands(t *testing.T) {
	h := newHarness(t)
	c := h.client
	data2 := pattern(1024, 3)
	data1 := pattern(512, 9)
	h.disk.WriteAt(pattern(512, 77), 100*512) // for the reads
	written := func(lba int, data []byte) func(t *testing.T) {
		return func(t *testing.T) {
			if !bytes.Equal(h.disk.bytes(lba*512, len(data)), data) {
				t.Error("data not written")
			}
		}
	}

	for _, tc := range []struct {
		name       string
		ata        aoe.ATA
		wantStatus uint8
		wantErrReg uint8
		wantCount  uint8
		wantData   []byte // expected response data (reads)
		check      func(t *testing.T)
	}{
		{
			name:       "read sectors ext",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: 100},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 1, wantData: pattern(512, 77),
		},
		{
			name: "read sectors LBA28 with device bits",
			// The Linux driver puts 0xE0 (LBA mode, device bits) in the
			// high nibble of LBA byte 3: not part of the address.
			ata:        aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAReadSectors, LBA: 0xE0<<24 | 100},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 1, wantData: pattern(512, 77),
		},
		{
			name:       "write sectors ext",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 2, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 10, Data: data2},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 2,
			check: written(10, data2),
		},
		{
			name:       "write sectors LBA28",
			ata:        aoe.ATA{Flags: aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectors, LBA: 0xE0<<24 | 20, Data: data1},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 1,
			check: written(20, data1),
		},
		{
			name:       "write FUA ext",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteFUAExt, LBA: 30, Data: data1},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 1,
			check: written(30, data1),
		},
		{
			name:       "check power mode",
			ata:        aoe.ATA{CmdStatus: aoe.ATACheckPowerMode},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 0xff,
		},
		{name: "flush cache", ata: aoe.ATA{CmdStatus: aoe.ATAFlushCache}, wantStatus: aoe.ATAStatusDRDY},
		{name: "flush cache ext", ata: aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}, wantStatus: aoe.ATAStatusDRDY},
		{
			name:       "read with count 0",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 0, CmdStatus: aoe.ATAReadSectorsExt, LBA: 5},
			wantStatus: aoe.ATAStatusDRDY, wantData: []byte{},
		},
		{
			name:       "write with count 0",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 0, CmdStatus: aoe.ATAWriteSectorsExt, LBA: 5},
			wantStatus: aoe.ATAStatusDRDY,
		},
		{
			name:       "unknown ATA command",
			ata:        aoe.ATA{SectorCount: 1, CmdStatus: 0xC8}, // READ DMA
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorABRT, wantCount: 1,
		},
		{
			name:       "SMART",
			ata:        aoe.ATA{CmdStatus: 0xB0},
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorABRT,
		},
		{
			name:       "read past the end",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 2, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors - 1},
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorIDNF, wantCount: 2,
		},
		{
			name:       "read far past the end",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: aoe.MaxLBA},
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorIDNF, wantCount: 1,
		},
		{
			name:       "write past the end",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteSectorsExt, LBA: testSectors, Data: data1},
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorIDNF, wantCount: 1,
		},
		{
			name:       "last sector",
			ata:        aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt, LBA: testSectors - 1},
			wantStatus: aoe.ATAStatusDRDY, wantCount: 1, wantData: make([]byte, 512),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := c.roundTrip(t, c.request(aoe.CommandATA, ataArg(t, tc.ata)))
			checkResponse(t, f, 0)
			if f.Tag == 0 {
				t.Error("tag not echoed")
			}
			a := decodeATA(t, f)
			if a.CmdStatus != tc.wantStatus || a.FeatureError != tc.wantErrReg {
				t.Errorf("status %#x error %#x, want %#x %#x", a.CmdStatus, a.FeatureError, tc.wantStatus, tc.wantErrReg)
			}
			if a.SectorCount != tc.wantCount {
				t.Errorf("count %#x, want %#x", a.SectorCount, tc.wantCount)
			}
			if a.Flags != tc.ata.Flags || a.LBA != tc.ata.LBA {
				t.Errorf("registers changed: flags %#x lba %#x", a.Flags, a.LBA)
			}
			if tc.wantData != nil {
				// Responses without data are padded to 60 bytes, which
				// leaves 24 bytes of zeros after the ATA header.
				if len(tc.wantData) == 0 && len(a.Data) > 24 {
					t.Errorf("%d bytes of data, want none", len(a.Data))
				}
				if len(tc.wantData) > 0 && (len(a.Data) != len(tc.wantData) || !bytes.Equal(a.Data, tc.wantData)) {
					t.Errorf("wrong data (%d bytes)", len(a.Data))
				}
			}
			if tc.check != nil {
				tc.check(t)
			}
		})
	}
	st := h.srv.Stats()
	if st.Errors["ata_abort"] != 2 || st.Errors["ata_idnf"] != 3 {
		t.Errorf("errors %v", st.Errors)
	}
}

func TestFlushSyncs(t *testing.T) {
	for _, syncWrites := range []bool{false, true} {
		h := newHarness(t, withConfig(func(c *Config) { c.SyncWrites = syncWrites }))
		for _, cmd := range []uint8{aoe.ATAFlushCache, aoe.ATAFlushCacheExt} {
			before := h.disk.syncs.Load()
			f := h.client.roundTrip(t, h.client.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: cmd})))
			checkResponse(t, f, 0)
			if h.disk.syncs.Load() != before+1 {
				t.Errorf("sync %v: FLUSH %#x ran %d syncs", syncWrites, cmd, h.disk.syncs.Load()-before)
			}
		}
	}
}

func TestWriteWithoutSyncDoesNotSync(t *testing.T) {
	h := newHarness(t)
	f := h.client.roundTrip(t, writeReq(h.client, t, 1, pattern(512, 1)))
	checkResponse(t, f, 0)
	if n := h.disk.syncs.Load(); n != 0 {
		t.Errorf("%d syncs for a write without -s", n)
	}
	// WRITE FUA EXT is durable before its ack in both modes.
	f = h.client.roundTrip(t, h.client.request(aoe.CommandATA, ataArg(t, aoe.ATA{
		Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 1, CmdStatus: aoe.ATAWriteFUAExt, LBA: 2, Data: pattern(512, 2),
	})))
	checkResponse(t, f, 0)
	if n := h.disk.syncs.Load(); n != 1 {
		t.Errorf("%d syncs for WRITE FUA EXT", n)
	}
}

func TestReadOnly(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.ReadOnly = true }))
	for _, cmd := range []uint8{aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt} {
		f := h.client.roundTrip(t, h.client.request(aoe.CommandATA, ataArg(t, aoe.ATA{
			Flags: aoe.ATAFlagWrite | aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: cmd, LBA: 3, Data: pattern(512, 5),
		})))
		checkResponse(t, f, 0)
		a := decodeATA(t, f)
		if a.CmdStatus != aoe.ATAStatusDRDY|aoe.ATAStatusError || a.FeatureError != aoe.ATAErrorABRT {
			t.Errorf("write %#x on a read-only target: status %#x error %#x", cmd, a.CmdStatus, a.FeatureError)
		}
	}
	if !bytes.Equal(h.disk.bytes(3*512, 512), make([]byte, 512)) {
		t.Error("read-only target wrote")
	}
	// Reads still work.
	f := h.client.roundTrip(t, readReq(h.client, t, 3, 1))
	if a := decodeATA(t, f); a.CmdStatus != aoe.ATAStatusDRDY {
		t.Errorf("read on a read-only target: status %#x", a.CmdStatus)
	}
	if got := h.srv.Stats().Errors["ata_read_only"]; got != 3 {
		t.Errorf("ata_read_only = %d", got)
	}
}

func TestBackendFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		sync       bool
		fail       func(d *memDisk)
		req        func(c *client, t *testing.T) *aoe.Frame
		wantStatus uint8
		wantErrReg uint8
		kind       string
	}{
		{
			name: "read", fail: func(d *memDisk) { d.failRead.Store(true) },
			req:        func(c *client, t *testing.T) *aoe.Frame { return readReq(c, t, 1, 1) },
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError, wantErrReg: aoe.ATAErrorUNC, kind: "ata_read_error",
		},
		{
			name: "write", fail: func(d *memDisk) { d.failWrite.Store(true) },
			req:        func(c *client, t *testing.T) *aoe.Frame { return writeReq(c, t, 1, pattern(512, 1)) },
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError | aoe.ATAStatusDF, wantErrReg: aoe.ATAErrorABRT, kind: "ata_write_error",
		},
		{
			name: "sync of a write", sync: true, fail: func(d *memDisk) { d.failSync.Store(true) },
			req:        func(c *client, t *testing.T) *aoe.Frame { return writeReq(c, t, 1, pattern(512, 1)) },
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError | aoe.ATAStatusDF, wantErrReg: aoe.ATAErrorABRT, kind: "ata_sync_error",
		},
		{
			name: "sync of a flush", fail: func(d *memDisk) { d.failSync.Store(true) },
			req: func(c *client, t *testing.T) *aoe.Frame {
				return c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))
			},
			wantStatus: aoe.ATAStatusDRDY | aoe.ATAStatusError | aoe.ATAStatusDF, wantErrReg: aoe.ATAErrorABRT, kind: "ata_sync_error",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, withConfig(func(c *Config) { c.SyncWrites = tc.sync }))
			tc.fail(h.disk)
			f := h.client.roundTrip(t, tc.req(h.client, t))
			checkResponse(t, f, 0)
			a := decodeATA(t, f)
			if a.CmdStatus != tc.wantStatus || a.FeatureError != tc.wantErrReg {
				t.Errorf("status %#x error %#x, want %#x %#x", a.CmdStatus, a.FeatureError, tc.wantStatus, tc.wantErrReg)
			}
			if got := h.srv.Stats().Errors[tc.kind]; got != 1 {
				t.Errorf("%s = %d", tc.kind, got)
			}
			// The target keeps serving once the backend recovers.
			h.disk.failRead.Store(false)
			h.disk.failWrite.Store(false)
			h.disk.failSync.Store(false)
			f = h.client.roundTrip(t, readReq(h.client, t, 1, 1))
			if a := decodeATA(t, f); a.CmdStatus != aoe.ATAStatusDRDY {
				t.Errorf("after recovery: status %#x", a.CmdStatus)
			}
		})
	}
}
