package target

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"

	"github.com/ironblade/ironblade/aoe"
)

// disposition says what a worker does with a handled request.
type disposition int

const (
	// drop: no response.
	drop disposition = iota
	// replyNow: send the response built in the request's buffer.
	replyNow
	// replyAfterSync: the response waits for the syncer's next sync.
	replyAfterSync
	// wouldBlock: nothing done yet, as the request's I/O would wait for
	// the device: a worker is to handle it.
	wouldBlock
)

// Offsets in a frame.
const (
	offEtherType = 12
	offVerFlags  = aoe.EthernetHeaderLen
	offError     = aoe.EthernetHeaderLen + 1
	offMajor     = aoe.EthernetHeaderLen + 2
	offMinor     = aoe.EthernetHeaderLen + 4
	offCommand   = aoe.EthernetHeaderLen + 5
	offArg       = aoe.FrameHeaderLen
	// ATA registers, in the argument.
	offATAFlags  = offArg
	offATAError  = offArg + 1
	offATACount  = offArg + 2
	offATAStatus = offArg + 3
	offATAData   = offArg + aoe.ATAHeaderLen
)

// handle executes one request and builds its response in place: the
// response keeps the request's tag and command and, for ATA, its
// registers but for status, error and data. It may wait for the backend.
func (c *session) handle(r *request) disposition { return c.execute(r, true) }

// tryHandle is handle for a receive loop: a request whose I/O would wait
// for the device is left as it is, for a worker (wouldBlock).
func (c *session) tryHandle(r *request) disposition { return c.execute(r, false) }

// execute is handle, or tryHandle if canBlock is false.
func (c *session) execute(r *request, canBlock bool) disposition {
	s := c.s
	b := r.buf[:r.n]
	if len(b) < aoe.FrameHeaderLen {
		return c.drop(dropShort)
	}
	if binary.BigEndian.Uint16(b[offEtherType:]) != aoe.EtherType {
		return c.drop(dropNotAoE)
	}
	if aoe.Flags(b[offVerFlags]&0x0f)&aoe.FlagResponse != 0 {
		return c.drop(dropResponse)
	}
	var dst, src aoe.MAC
	copy(dst[:], b[0:6])
	copy(src[:], b[6:12])
	if dst != c.mac && !dst.IsMulticast() {
		return c.drop(dropOtherHost)
	}
	if src.IsMulticast() || src.IsZero() {
		return c.drop(dropBadSource)
	}
	major := binary.BigEndian.Uint16(b[offMajor:])
	minor := b[offMinor]
	if (major != s.cfg.Shelf && major != aoe.BroadcastMajor) || (minor != s.cfg.Slot && minor != aoe.BroadcastMinor) {
		return c.drop(dropOtherTarget)
	}
	acc := s.access.Load()
	if acc.masked(src) {
		return c.drop(dropMACMask)
	}
	wildcard := major == aoe.BroadcastMajor || minor == aoe.BroadcastMinor
	if b[offVerFlags]>>4 != aoe.Version {
		return c.fail(r, aoe.ErrorUnsupportedVersion, aoe.FrameHeaderLen)
	}
	switch aoe.Command(b[offCommand]) {
	case aoe.CommandATA:
		return c.ata(r, src, wildcard, acc, canBlock)
	case aoe.CommandQueryConfig:
		return c.queryConfig(r)
	case aoe.CommandMACMask:
		return c.macMask(r)
	case aoe.CommandReserveRelease:
		return c.reserveRelease(r, src)
	}
	return c.fail(r, aoe.ErrorUnrecognizedCommand, aoe.FrameHeaderLen)
}

func (c *session) drop(why dropReason) disposition {
	c.s.counters.dropped[why].Add(1)
	return drop
}

// reply turns the request's headers into a response's of length n: back
// to the sender, from our address, with the R flag and our shelf.slot
// (the request may have used the wildcards).
func (c *session) reply(r *request, n int) disposition {
	b := r.buf
	copy(b[0:6], b[6:12])
	copy(b[6:12], c.mac[:])
	b[offVerFlags] = aoe.Version<<4 | uint8(aoe.FlagResponse)
	b[offError] = 0
	binary.BigEndian.PutUint16(b[offMajor:], c.s.cfg.Shelf)
	b[offMinor] = c.s.cfg.Slot
	r.resp = n
	return replyNow
}

// fail answers with an AoE error: the E flag and code, and the first n
// bytes of the request as they are.
func (c *session) fail(r *request, code aoe.Error, n int) disposition {
	c.reply(r, n)
	c.markError(r, code)
	return replyNow
}

// markError sets the E flag and code on a response built by reply.
func (c *session) markError(r *request, code aoe.Error) {
	r.buf[offVerFlags] |= uint8(aoe.FlagError)
	r.buf[offError] = uint8(code)
	kind := errBadArgument
	switch code {
	case aoe.ErrorUnrecognizedCommand:
		kind = errUnrecognizedCommand
	case aoe.ErrorConfigStringPresent:
		kind = errConfigStringPresent
	case aoe.ErrorUnsupportedVersion:
		kind = errUnsupportedVersion
	case aoe.ErrorTargetReserved:
		kind = errTargetReserved
	}
	c.s.counters.errors[kind].Add(1)
}

// ataFail sets an ATA error status (DRDY|ERR plus extra) and error register
// on an ATA response.
func ataFail(b []byte, extraStatus, errReg uint8) {
	b[offATAStatus] = aoe.ATAStatusDRDY | aoe.ATAStatusError | extraStatus
	b[offATAError] = errReg
}

// ataDone answers an ATA request with the given status and error
// registers and n bytes of data.
func (c *session) ataDone(r *request, status, errReg uint8, data int) disposition {
	r.buf[offATAStatus] = status
	r.buf[offATAError] = errReg
	return c.reply(r, offATAData+data)
}

// ataError answers an ATA request with an ATA error and counts it.
func (c *session) ataError(r *request, kind errorKind, extraStatus, errReg uint8) disposition {
	c.s.counters.errors[kind].Add(1)
	ataFail(r.buf, extraStatus, errReg)
	return c.reply(r, offATAData)
}

// isWriteCommand reports whether an ATA command carries data to the device.
func isWriteCommand(cmd uint8) bool {
	return cmd == aoe.ATAWriteSectors || cmd == aoe.ATAWriteSectorsExt || cmd == aoe.ATAWriteFUAExt
}

// ata executes an ATA command. Writes to the wildcard address are
// dropped; a reservation refuses everything but IDENTIFY; arguments that
// contradict the command or the frame get AoE error 2 rather than a guess.
// Unless canBlock, a read or write that would wait for the device is not
// done (wouldBlock); nothing before it changes the request.
func (c *session) ata(r *request, src aoe.MAC, wildcard bool, acc *access, canBlock bool) disposition {
	s := c.s
	b := r.buf[:r.n]
	var a aoe.ATA
	if err := a.UnmarshalBinary(b[offArg:]); err != nil {
		return c.drop(dropShort)
	}
	cmd := a.CmdStatus
	if wildcard && (a.IsWrite() || isWriteCommand(cmd)) {
		// A write to every target at once is never what anyone meant.
		return c.drop(dropWildcardWrite)
	}
	if cmd != aoe.ATAIdentifyDevice && acc.reservedAgainst(src) {
		return c.fail(r, aoe.ErrorTargetReserved, offATAData)
	}
	spf := c.sectorsPerFrame()
	count := int(a.SectorCount)

	switch cmd {
	case aoe.ATAIdentifyDevice:
		if a.IsWrite() || count != 1 || spf < 1 {
			return c.fail(r, aoe.ErrorBadArgument, offATAData)
		}
		copy(r.buf[offATAData:], s.identify[:])
		return c.ataDone(r, aoe.ATAStatusDRDY, 0, aoe.SectorSize)

	case aoe.ATACheckPowerMode:
		if a.IsWrite() {
			return c.fail(r, aoe.ErrorBadArgument, offATAData)
		}
		r.buf[offATACount] = 0xff // active or idle
		return c.ataDone(r, aoe.ATAStatusDRDY, 0, 0)

	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		if a.IsWrite() {
			return c.fail(r, aoe.ErrorBadArgument, offATAData)
		}
		c.ataDone(r, aoe.ATAStatusDRDY, 0, 0)
		return replyAfterSync

	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt:
	default:
		return c.ataError(r, errATAAbort, 0, aoe.ATAErrorABRT)
	}

	// Reads and writes.
	write := isWriteCommand(cmd)
	lba := a.LBA
	if cmd == aoe.ATAReadSectors || cmd == aoe.ATAWriteSectors {
		var ok bool
		if lba, ok = a.LBA28(); !ok {
			return c.fail(r, aoe.ErrorBadArgument, offATAData)
		}
	}
	n := count * aoe.SectorSize
	switch {
	case a.IsWrite() != write, count > spf, write && len(a.Data) < n:
		return c.fail(r, aoe.ErrorBadArgument, offATAData)
	case write && s.cfg.ReadOnly:
		return c.ataError(r, errATAReadOnly, 0, aoe.ATAErrorABRT)
	case lba+uint64(count) > s.sectors:
		return c.ataError(r, errATAIDNF, 0, aoe.ATAErrorIDNF)
	case count == 0:
		return c.ataDone(r, aoe.ATAStatusDRDY, 0, 0)
	}
	off := int64(lba) * aoe.SectorSize
	if !write {
		var err error
		switch dst := r.buf[offATAData : offATAData+n]; {
		case canBlock:
			_, err = s.cfg.Backend.ReadAt(dst, off)
		case c.nonblocking == nil:
			return wouldBlock
		default:
			if _, err = c.nonblocking.TryReadAt(dst, off); errors.Is(err, ErrWouldBlock) {
				return wouldBlock
			}
		}
		if err != nil {
			s.errLog.Error("read", "backend read failed", "err", err, "lba", lba, "sectors", count)
			return c.ataError(r, errATARead, 0, aoe.ATAErrorUNC)
		}
		s.counters.bytesRead.Add(uint64(n))
		return c.ataDone(r, aoe.ATAStatusDRDY, 0, n)
	}
	needSync := s.cfg.SyncWrites || cmd == aoe.ATAWriteFUAExt
	var err error
	durable := false
	if needSync && r.alone && c.durable != nil && c.syncer.idleForOne() {
		// A lone write: one durable write costs less than a write
		// and a sync, and no other write would share the sync.
		_, err = c.durable.WriteAtDurable(a.Data[:n], off)
		durable = !errors.Is(err, ErrDurableUnsupported)
	}
	if !durable {
		switch {
		case canBlock:
			_, err = s.cfg.Backend.WriteAt(a.Data[:n], off)
		case c.nonblocking == nil:
			return wouldBlock
		default:
			if _, err = c.nonblocking.TryWriteAt(a.Data[:n], off); errors.Is(err, ErrWouldBlock) {
				return wouldBlock
			}
		}
	}
	if err != nil {
		s.errLog.Error("write", "backend write failed", "err", err, "lba", lba, "sectors", count)
		return c.ataError(r, errATAWrite, aoe.ATAStatusDF, aoe.ATAErrorABRT)
	}
	s.counters.bytesWritten.Add(uint64(n))
	c.ataDone(r, aoe.ATAStatusDRDY, 0, 0)
	switch {
	case durable:
		// Its own sync, in the figures as one.
		s.counters.syncs.Add(1)
		s.counters.syncedWrites.Add(1)
	case needSync:
		r.sync = true
		return replyAfterSync
	}
	return replyNow
}

// putConfig writes a Query Config response argument into b and returns
// its length.
func (c *session) putConfig(b []byte, ccmd aoe.ConfigCommand, str []byte) int {
	s := c.s
	binary.BigEndian.PutUint16(b[0:2], uint16(s.cfg.BufferCount))
	binary.BigEndian.PutUint16(b[2:4], s.firmware)
	b[4] = uint8(c.sectorsPerFrame())
	b[5] = aoe.Version<<4 | uint8(ccmd)&0x0f
	binary.BigEndian.PutUint16(b[6:8], uint16(len(str)))
	copy(b[aoe.ConfigHeaderLen:], str)
	return aoe.ConfigHeaderLen + len(str)
}

// queryConfig answers a Query Config request: read,
// test and test-prefix (silent on a mismatch), set (refused with error 4
// when another string is set) and force set.
func (c *session) queryConfig(r *request) disposition {
	s := c.s
	b := r.buf[:r.n]
	if len(b) < offArg+aoe.ConfigHeaderLen {
		return c.drop(dropShort)
	}
	ccmd := aoe.ConfigCommand(b[offArg+5] & 0x0f)
	var req aoe.Config
	if req.UnmarshalBinary(b[offArg:]) != nil || ccmd > aoe.ConfigForceSet {
		return c.configReply(r, ccmd, aoe.ErrorBadArgument)
	}
	switch ccmd {
	case aoe.ConfigSet, aoe.ConfigForceSet:
		if s.setConfigString(req.String, ccmd == aoe.ConfigForceSet) {
			return c.configReply(r, ccmd, aoe.ErrorConfigStringPresent)
		}
	case aoe.ConfigTest, aoe.ConfigTestPrefix:
		s.stateMu.Lock()
		match := bytes.HasPrefix(s.configString, req.String) &&
			(ccmd == aoe.ConfigTestPrefix || len(req.String) == len(s.configString))
		s.stateMu.Unlock()
		if !match {
			// AoE r11: a test that fails gets no answer at all.
			return c.drop(dropConfigMismatch)
		}
	}
	return c.configReply(r, ccmd, 0)
}

// configReply answers a Query Config request with the target's values and
// config string, and an AoE error if code is not 0.
func (c *session) configReply(r *request, ccmd aoe.ConfigCommand, code aoe.Error) disposition {
	s := c.s
	s.stateMu.Lock()
	n := c.putConfig(r.buf[offArg:], ccmd, s.configString)
	s.stateMu.Unlock()
	c.reply(r, offArg+n)
	if code != 0 {
		c.markError(r, code)
	}
	return replyNow
}

// macMask reads or edits the MAC mask list and answers with the list.
func (c *session) macMask(r *request) disposition {
	s := c.s
	b := r.buf[:r.n]
	if len(b) < offArg+aoe.MACMaskHeaderLen {
		return c.drop(dropShort)
	}
	arg := r.buf[offArg:]
	switch aoe.MACMaskCommand(arg[1]) {
	case aoe.MACMaskRead:
	case aoe.MACMaskEdit:
		count := int(arg[3])
		if len(b) < offArg+aoe.MACMaskHeaderLen+aoe.DirectiveLen*count {
			return c.fail(r, aoe.ErrorBadArgument, offArg+aoe.MACMaskHeaderLen)
		}
		failed, merr := s.editMask(arg[aoe.MACMaskHeaderLen:], count)
		if merr != aoe.MACMaskErrorNone {
			// AoE: the error, and the directive count set to the
			// index of the directive that failed (the ones before it
			// took effect and are echoed).
			arg[2] = uint8(merr)
			arg[3] = uint8(failed)
			return c.reply(r, offArg+aoe.MACMaskHeaderLen+aoe.DirectiveLen*failed)
		}
	default:
		return c.fail(r, aoe.ErrorBadArgument, offArg+aoe.MACMaskHeaderLen)
	}
	mask := s.access.Load().mask
	arg[2] = uint8(aoe.MACMaskErrorNone)
	arg[3] = uint8(len(mask))
	for i, m := range mask {
		d := arg[aoe.MACMaskHeaderLen+aoe.DirectiveLen*i:]
		d[0], d[1] = 0, uint8(aoe.DirectiveNone)
		copy(d[2:8], m[:])
	}
	return c.reply(r, offArg+aoe.MACMaskHeaderLen+aoe.DirectiveLen*len(mask))
}

// editMask applies count directives in order and stops at the first that
// fails, reporting its index and the error.
func (s *Server) editMask(dirs []byte, count int) (failed int, merr aoe.MACMaskError) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	old := s.access.Load()
	mask := slices.Clone(old.mask)
	failed = count
	for i := range count {
		d := dirs[aoe.DirectiveLen*i:]
		var m aoe.MAC
		copy(m[:], d[2:8])
		switch aoe.DirectiveCommand(d[1]) {
		case aoe.DirectiveNone:
			continue
		case aoe.DirectiveAdd:
			if slices.Contains(mask, m) {
				continue
			}
			if len(mask) >= MaxMACMask {
				merr = aoe.MACMaskErrorListFull
			} else if m.IsMulticast() || m.IsZero() {
				merr = aoe.MACMaskErrorBadDirective
			} else {
				mask = append(mask, m)
				continue
			}
		case aoe.DirectiveDelete:
			if j := slices.Index(mask, m); j >= 0 {
				mask = slices.Delete(mask, j, j+1)
			}
			continue
		default:
			merr = aoe.MACMaskErrorBadDirective
		}
		failed = i
		break
	}
	switch merr {
	case aoe.MACMaskErrorListFull:
		s.counters.errors[errMaskListFull].Add(1)
	case aoe.MACMaskErrorBadDirective:
		s.counters.errors[errMaskBadDirective].Add(1)
	}
	if !slices.Equal(mask, old.mask) {
		s.access.Store(&access{mask: mask, reserve: old.reserve})
		s.log.Info("MAC mask list changed", "mask", formatMACs(mask))
		s.persistLocked()
	}
	return failed, merr
}

// reserveRelease reads or sets the reserve list (set only by a member, or
// when the target is free; force set always) and answers with the list.
func (c *session) reserveRelease(r *request, src aoe.MAC) disposition {
	s := c.s
	b := r.buf[:r.n]
	if len(b) < offArg+aoe.ReserveReleaseHeaderLen {
		return c.drop(dropShort)
	}
	arg := r.buf[offArg:]
	var code aoe.Error
	switch rcmd := aoe.ReserveCommand(arg[0]); rcmd {
	case aoe.ReserveRead:
	case aoe.ReserveSet, aoe.ReserveForceSet:
		count := int(arg[1])
		if len(b) < offArg+aoe.ReserveReleaseHeaderLen+6*count {
			code = aoe.ErrorBadArgument
			break
		}
		if !s.setReserve(arg[aoe.ReserveReleaseHeaderLen:aoe.ReserveReleaseHeaderLen+6*count], src, rcmd == aoe.ReserveForceSet) {
			code = aoe.ErrorTargetReserved
		}
	default:
		code = aoe.ErrorBadArgument
	}
	// Every response, refusals included, lists the reservation in force.
	list := s.access.Load().reserve
	arg[1] = uint8(len(list))
	for i, m := range list {
		copy(arg[aoe.ReserveReleaseHeaderLen+6*i:], m[:])
	}
	c.reply(r, offArg+aoe.ReserveReleaseHeaderLen+6*len(list))
	if code != 0 {
		c.markError(r, code)
	}
	return replyNow
}

// setReserve replaces the reserve list with the addresses in macs (6 bytes
// each): always when forced, else only if the target is not reserved or
// is reserved to src. It reports whether it did.
func (s *Server) setReserve(macs []byte, src aoe.MAC, force bool) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	old := s.access.Load()
	if !force && old.reservedAgainst(src) {
		return false
	}
	list := make([]aoe.MAC, 0, len(macs)/6)
	for i := 0; i+6 <= len(macs); i += 6 {
		var m aoe.MAC
		copy(m[:], macs[i:i+6])
		if !slices.Contains(list, m) {
			list = append(list, m)
		}
	}
	if !slices.Equal(list, old.reserve) {
		s.access.Store(&access{mask: old.mask, reserve: list})
		s.log.Info("reserve list changed", "reserve", formatMACs(list), "by", src, "force", force)
		s.persistLocked()
	}
	return true
}
