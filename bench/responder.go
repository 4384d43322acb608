package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/ironblade/ironblade/aoe"
)

// This file holds the responder: the far end of the raw-link ceiling.
// Compare runs it (as `ironbench responder`) where a target runs, on the
// target's CPU when pinned, under the same generator: a target's IOPS over
// the responder's is the share of what the link and the generator allow
// that the target reaches.

// TargetCeiling is the Cell.Target of the responder's cells.
const TargetCeiling = "ceiling"

// ResponderConfig configures Respond. Zero fields get the defaults noted.
type ResponderConfig struct {
	// Shelf and Slot are the address the responder answers as; it also
	// answers requests to the broadcast addresses.
	Shelf uint16
	Slot  uint8
	// Sectors is the capacity IDENTIFY DEVICE reports; default 256 MiB
	// worth. Reads and writes beyond it fail as they would on a disk.
	Sectors uint64
	// BufferCount is the window Query Config advertises; default 64.
	BufferCount int
	// Batch is the most frames read (and answered) per system call;
	// default 64.
	Batch int
}

// ResponderStats counts what Respond did.
type ResponderStats struct {
	// Answered counts the requests answered, errors included; Ignored,
	// the frames left unanswered (not AoE requests for this address, or
	// Query Config commands other than read).
	Answered, Ignored uint64
	// SendErrors counts answers the link refused.
	SendErrors uint64
}

// Respond answers the AoE requests on link at once, without storage, until
// ctx ends, when it closes link and returns nil, or link fails. Query
// Config gets the address's configuration, IDENTIFY DEVICE a fixed sector,
// a read its sectors from a static buffer and a write an acknowledgement,
// its data dropped; other ATA commands succeed with no data. It moves
// frames in batches when link is an aoe.BatchLink, and allocates nothing
// per frame.
func Respond(ctx context.Context, link aoe.Link, cfg ResponderConfig) (ResponderStats, error) {
	r := newResponder(link.HardwareAddr(), cfg)
	stop := context.AfterFunc(ctx, func() { _ = link.Close() })
	defer stop()
	err := r.serve(link)
	if ctx.Err() != nil {
		return r.stats, nil
	}
	return r.stats, err
}

// responder answers requests in the buffers they were read into.
type responder struct {
	cfg ResponderConfig
	mac aoe.MAC
	// spf is the most sectors a request may move: what the link's MTU
	// allows, refreshed once per batch.
	spf      int
	identify [aoe.SectorSize]byte
	// data is what every read returns: a pattern, not zeros, so that no
	// layer below can take a shortcut.
	data [255 * aoe.SectorSize]byte
	// The request being answered: fields, so that decoding into them
	// allocates nothing.
	f      aoe.Frame
	ata    aoe.ATA
	config aoe.Config
	stats  ResponderStats
}

// newResponder prepares a responder at cfg's address, with its defaults
// set, answering from mac.
func newResponder(mac aoe.MAC, cfg ResponderConfig) *responder {
	if cfg.Sectors == 0 {
		cfg.Sectors = defaultFileSize / aoe.SectorSize
	}
	if cfg.BufferCount <= 0 {
		cfg.BufferCount = 64
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	r := &responder{cfg: cfg, mac: mac, spf: 1}
	r.identify = responderIdentify(min(cfg.Sectors, aoe.MaxLBA))
	for i := range r.data {
		r.data[i] = byte(i*7 + i>>9)
	}
	return r
}

// responderIdentify builds the IDENTIFY DEVICE sector of a disk of the
// given capacity: LBA48, its capacity in words 60-61 and 100-103, and the
// model "ironbench responder" (strings two characters a word, the first
// in the high byte).
func responderIdentify(sectors uint64) [aoe.SectorSize]byte {
	var d [aoe.SectorSize]byte
	put := func(word int, v uint16) { binary.LittleEndian.PutUint16(d[2*word:], v) }
	put(0, 0x0040)       // fixed device
	put(49, 1<<9)        // LBA supported
	put(83, 1<<14|1<<10) // LBA48
	put(86, 1<<10)       // LBA48 enabled
	put(106, 1<<14)      // one logical sector per physical
	binary.LittleEndian.PutUint32(d[120:], uint32(min(sectors, aoe.MaxLBA28)))
	binary.LittleEndian.PutUint64(d[200:], sectors)
	putATAString := func(dst []byte, s string) {
		for i := range dst {
			dst[i] = ' '
		}
		copy(dst, s)
		for i := 0; i+1 < len(dst); i += 2 {
			dst[i], dst[i+1] = dst[i+1], dst[i]
		}
	}
	putATAString(d[20:40], "responder")
	putATAString(d[46:54], "0")
	putATAString(d[54:94], "ironbench responder")
	return d
}

// serve reads, answers and sends until link fails.
func (r *responder) serve(link aoe.Link) error {
	batch, _ := link.(aoe.BatchLink)
	nbuf := r.cfg.Batch
	if batch == nil {
		nbuf = 1
	}
	size := max(link.MTU(), 9000) + aoe.EthernetHeaderLen
	bufs, lens := make([][]byte, nbuf), make([]int, nbuf)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	out := make([][]byte, 0, nbuf)
	for {
		n, err := r.read(link, batch, bufs, lens)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				continue
			}
			return fmt.Errorf("bench: responder: read: %w", err)
		}
		r.spf = aoe.SectorsPerFrame(link.MTU())
		for i := range n {
			if m := r.answer(bufs[i], lens[i]); m > 0 {
				out = append(out, bufs[i][:m])
			}
		}
		if err := r.send(link, batch, out); err != nil {
			return err
		}
		clear(out)
		out = out[:0]
	}
}

// read reads one batch of frames, or one frame if batch is nil.
func (r *responder) read(link aoe.Link, batch aoe.BatchLink, bufs [][]byte, lens []int) (int, error) {
	if batch != nil {
		return batch.ReadFrames(bufs, lens)
	}
	n, err := link.ReadFrame(bufs[0])
	lens[0] = n
	if err != nil {
		return 0, err
	}
	return 1, nil
}

// send sends the answers of a batch. An answer the link refuses is
// counted and skipped: the generator sends its request again. A closed
// link ends the responder.
func (r *responder) send(link aoe.Link, batch aoe.BatchLink, out [][]byte) error {
	for len(out) > 0 {
		var n int
		var err error
		if batch != nil {
			n, err = batch.WriteFrames(out)
			n = max(0, min(n, len(out)))
		} else if err = link.WriteFrame(out[0]); err == nil {
			n = 1
		}
		r.stats.Answered += uint64(n)
		out = out[n:]
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("bench: responder: send: %w", err)
			}
			r.stats.SendErrors++
			if len(out) > 0 {
				out = out[1:]
			}
		}
	}
	return nil
}

// answer turns the n-byte request in buf into its answer, in place, and
// returns the answer's length, or 0 to leave the frame unanswered. buf is
// the whole receive buffer, so that a read's answer can be longer than its
// request.
func (r *responder) answer(buf []byte, n int) int {
	f := &r.f
	if f.UnmarshalBinary(buf[:n]) != nil || f.IsResponse() ||
		f.Major != r.cfg.Shelf && f.Major != aoe.BroadcastMajor ||
		f.Minor != r.cfg.Slot && f.Minor != aoe.BroadcastMinor {
		r.stats.Ignored++
		return 0
	}
	switch {
	case f.Version != aoe.Version:
		return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorUnsupportedVersion)
	case f.Command == aoe.CommandQueryConfig:
		return r.queryConfig(buf)
	case f.Command == aoe.CommandATA:
		return r.ataCommand(buf)
	}
	return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorUnrecognizedCommand)
}

// reply writes the answer's headers, with code if not 0, and returns n,
// the answer's length.
func (r *responder) reply(buf []byte, n int, code aoe.Error) int {
	// buf holds at least a frame header: the request was decoded from it.
	_, _ = r.f.MarshalResponseHeaderTo(buf, r.mac, r.cfg.Shelf, r.cfg.Slot, code)
	return n
}

// queryConfig answers a Query Config read with the responder's
// configuration; other Query Config commands go unanswered.
func (r *responder) queryConfig(buf []byte) int {
	c := &r.config
	if c.UnmarshalHeader(r.f.Arg) != nil || c.Command != aoe.ConfigRead {
		r.stats.Ignored++
		return 0
	}
	*c = aoe.Config{BufferCount: uint16(min(r.cfg.BufferCount, 0xffff)), SectorCount: uint8(r.spf),
		Version: aoe.Version, Command: aoe.ConfigRead}
	n, err := c.MarshalTo(buf[aoe.FrameHeaderLen:])
	if err != nil {
		return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorBadArgument)
	}
	return r.reply(buf, aoe.FrameHeaderLen+n, 0)
}

// ataCommand answers an ATA command at once, from the static buffers.
func (r *responder) ataCommand(buf []byte) int {
	a := &r.ata
	if a.UnmarshalBinary(r.f.Arg) != nil {
		return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorBadArgument)
	}
	arg := buf[aoe.FrameHeaderLen:]
	count := int(a.SectorCount)
	data := 0
	switch a.CmdStatus {
	case aoe.ATAIdentifyDevice:
		if a.IsWrite() || count != 1 {
			return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorBadArgument)
		}
		data = copy(arg[aoe.ATAHeaderLen:], r.identify[:])
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt:
		write := a.CmdStatus != aoe.ATAReadSectors && a.CmdStatus != aoe.ATAReadSectorsExt
		lba := a.LBA
		if a.CmdStatus == aoe.ATAReadSectors || a.CmdStatus == aoe.ATAWriteSectors {
			lba, _ = a.LBA28()
		}
		switch {
		case a.IsWrite() != write || count > r.spf || write && len(a.Data) < a.DataLen() ||
			aoe.FrameHeaderLen+aoe.ATAHeaderLen+a.DataLen() > len(buf):
			return r.reply(buf, aoe.FrameHeaderLen, aoe.ErrorBadArgument)
		case lba+uint64(count) > r.cfg.Sectors:
			a.MarshalResponseHeaderTo(arg, aoe.ATAStatusDRDY|aoe.ATAStatusError, aoe.ATAErrorIDNF)
			return r.reply(buf, aoe.FrameHeaderLen+aoe.ATAHeaderLen, 0)
		case !write:
			data = copy(arg[aoe.ATAHeaderLen:], r.data[:a.DataLen()])
		}
	}
	a.MarshalResponseHeaderTo(arg, aoe.ATAStatusDRDY, 0)
	return r.reply(buf, aoe.FrameHeaderLen+aoe.ATAHeaderLen+data, 0)
}
