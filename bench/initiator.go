package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// newTag returns a random tag in the userland half.
func newTag() uint32 { return aoe.TagUserland | rand.Uint32()&(aoe.TagUserland-1) }

// Discover broadcasts a Query Config read to every shelf and slot and
// returns the targets that answer within wait, sorted by shelf, slot and
// address. It must not run alongside another reader of link.
func Discover(ctx context.Context, link Link, wait time.Duration) ([]Device, error) {
	tag := newTag()
	f := aoe.Frame{Dst: aoe.BroadcastMAC, Src: link.HardwareAddr(), Header: aoe.Header{
		Version: aoe.Version, Major: aoe.BroadcastMajor, Minor: aoe.BroadcastMinor, Command: aoe.CommandQueryConfig, Tag: tag},
		Arg: make([]byte, aoe.ConfigHeaderLen)}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("bench: discover: %w", err)
	}
	if err := link.WriteFrame(b); err != nil {
		return nil, fmt.Errorf("bench: discover: %w", err)
	}
	var devs []Device
	err = readUntil(ctx, link, time.Now().Add(wait), func(f *aoe.Frame) bool {
		if f.Tag != tag || f.Command != aoe.CommandQueryConfig || f.Flags&aoe.FlagError != 0 {
			return false
		}
		var cfg aoe.Config
		if cfg.UnmarshalBinary(f.Arg) != nil {
			return false
		}
		d := Device{MAC: f.Src, Shelf: f.Major, Slot: f.Minor, BufferCount: int(cfg.BufferCount),
			SectorsPerFrame: min(int(cfg.SectorCount), aoe.SectorsPerFrame(link.MTU()))}
		if !slices.ContainsFunc(devs, func(o Device) bool { return o.MAC == d.MAC && o.Shelf == d.Shelf && o.Slot == d.Slot }) {
			devs = append(devs, d)
		}
		return false
	})
	slices.SortFunc(devs, func(a, b Device) int {
		return cmp.Or(cmp.Compare(a.Shelf, b.Shelf), cmp.Compare(a.Slot, b.Slot), bytes.Compare(a.MAC[:], b.MAC[:]))
	})
	if err != nil {
		return devs, fmt.Errorf("bench: discover: %w", err)
	}
	return devs, nil
}

// WaitFor discovers until the target at shelf.slot answers or timeout
// passes.
func WaitFor(ctx context.Context, link Link, shelf uint16, slot uint8, timeout time.Duration) (Device, error) {
	deadline := time.Now().Add(timeout)
	for {
		devs, err := Discover(ctx, link, 100*time.Millisecond)
		if err != nil {
			return Device{}, err
		}
		for _, d := range devs {
			if d.Shelf == shelf && d.Slot == slot {
				return d, nil
			}
		}
		if time.Now().After(deadline) {
			return Device{}, fmt.Errorf("bench: no answer from e%d.%d within %v (found %v)", shelf, slot, timeout, devs)
		}
	}
}

// readUntil reads AoE answers addressed to link until deadline, ctx's end
// or take returns true.
func readUntil(ctx context.Context, link Link, deadline time.Time, take func(*aoe.Frame) bool) error {
	defer link.SetReadDeadline(time.Time{})
	buf := make([]byte, max(link.MTU(), 9000)+aoe.EthernetHeaderLen)
	me := link.HardwareAddr()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		dl := deadline
		if poll := time.Now().Add(pollInterval); poll.Before(dl) {
			dl = poll
		}
		if err := link.SetReadDeadline(dl); err != nil {
			return err
		}
		n, err := link.ReadFrame(buf)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if !time.Now().Before(deadline) {
				return nil
			}
			continue
		case err != nil:
			return err
		}
		var f aoe.Frame
		if f.UnmarshalBinary(buf[:n]) != nil || !f.IsResponse() || f.Dst != me {
			continue
		}
		if take(&f) {
			return nil
		}
	}
}

// Identify sends ATA IDENTIFY DEVICE to d and fills in its capacity and
// strings.
func Identify(ctx context.Context, link Link, d *Device) error {
	arg, err := (&aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}).MarshalBinary()
	if err != nil {
		return fmt.Errorf("bench: identify: %w", err)
	}
	var id []byte
	var failure error
	for try := 0; try < 5 && id == nil && failure == nil; try++ {
		tag := newTag()
		f := aoe.Frame{Dst: d.MAC, Src: link.HardwareAddr(), Header: aoe.Header{
			Version: aoe.Version, Major: d.Shelf, Minor: d.Slot, Command: aoe.CommandATA, Tag: tag}, Arg: arg}
		b, err := f.MarshalBinary()
		if err != nil {
			return fmt.Errorf("bench: identify: %w", err)
		}
		if err := link.WriteFrame(b); err != nil {
			return fmt.Errorf("bench: identify %v: %w", d, err)
		}
		err = readUntil(ctx, link, time.Now().Add(time.Second), func(f *aoe.Frame) bool {
			if f.Tag != tag || f.Src != d.MAC || f.Command != aoe.CommandATA {
				return false
			}
			var a aoe.ATA
			switch {
			case f.Flags&aoe.FlagError != 0:
				failure = f.Error
			case a.UnmarshalBinary(f.Arg) != nil || len(a.Data) < aoe.SectorSize:
				failure = aoe.ErrShort
			case a.CmdStatus&aoe.ATAStatusError != 0:
				failure = fmt.Errorf("ATA status %#02x, error %#02x", a.CmdStatus, a.FeatureError)
			default:
				id = bytes.Clone(a.Data[:aoe.SectorSize])
			}
			return true
		})
		if err != nil {
			return fmt.Errorf("bench: identify %v: %w", d, err)
		}
	}
	switch {
	case failure != nil:
		return fmt.Errorf("bench: identify %v: %w", d, failure)
	case id == nil:
		return fmt.Errorf("bench: identify %v: %w", d, aoe.ErrNoResponse)
	}
	word := func(i int) uint16 { return binary.LittleEndian.Uint16(id[2*i:]) }
	if (word(83)|word(86))&(1<<10) != 0 {
		d.Sectors = binary.LittleEndian.Uint64(id[200:]) & aoe.MaxLBA
	} else {
		d.Sectors = uint64(binary.LittleEndian.Uint32(id[120:]))
	}
	d.Serial, d.Firmware, d.Model = ataString(id[20:40]), ataString(id[46:54]), ataString(id[54:94])
	return nil
}

// ataString decodes an IDENTIFY string: two characters a word, the first
// in the word's high byte, padded with spaces.
func ataString(b []byte) string {
	s := make([]byte, len(b))
	for i := 0; i+1 < len(b); i += 2 {
		s[i], s[i+1] = b[i+1], b[i]
	}
	return strings.TrimSpace(string(bytes.TrimRight(s, "\x00")))
}
