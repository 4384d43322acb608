package target

import (
	"bytes"
	"errors"
	"fmt"
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

// ataHeadersLen is the length of an ATA frame's headers: where its data
// starts.
const ataHeadersLen = aoe.FrameHeaderLen + aoe.ATAHeaderLen

// ataStatusFailed is the status of an ATA command that failed: the device
// is ready, and the error register says what went wrong.
const ataStatusFailed = aoe.ATAStatusDRDY | aoe.ATAStatusError

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
	f := &r.f
	r.op = opOther
	if err := f.UnmarshalBinary(r.buf[:r.n]); err != nil {
		if errors.Is(err, aoe.ErrNotAoE) {
			return c.drop(dropNotAoE)
		}
		return c.drop(dropShort)
	}
	if f.IsResponse() {
		return c.drop(dropResponse)
	}
	if f.Dst != c.mac && !f.Dst.IsMulticast() {
		return c.drop(dropOtherHost)
	}
	if f.Src.IsMulticast() || f.Src.IsZero() {
		return c.drop(dropBadSource)
	}
	if (f.Major != s.cfg.Shelf && f.Major != aoe.BroadcastMajor) || (f.Minor != s.cfg.Slot && f.Minor != aoe.BroadcastMinor) {
		return c.drop(dropOtherTarget)
	}
	acc := s.access.Load()
	if acc.masked(f.Src) {
		return c.drop(dropMACMask)
	}
	wildcard := f.Major == aoe.BroadcastMajor || f.Minor == aoe.BroadcastMinor
	if f.Version != aoe.Version {
		return c.fail(r, aoe.ErrorUnsupportedVersion, aoe.FrameHeaderLen)
	}
	switch f.Command {
	case aoe.CommandATA:
		return c.ata(r, wildcard, acc, canBlock)
	case aoe.CommandQueryConfig:
		return c.queryConfig(r)
	case aoe.CommandMACMask:
		return c.macMask(r)
	case aoe.CommandReserveRelease:
		return c.reserveRelease(r)
	}
	return c.fail(r, aoe.ErrorUnrecognizedCommand, aoe.FrameHeaderLen)
}

func (c *session) drop(why dropReason) disposition {
	c.s.counters.dropped[why].Add(1)
	return drop
}

// reply answers r with the response of n bytes whose argument is in place
// in its buffer: it encodes the response's headers over the request's
// (see aoe.Frame.MarshalResponseHeaderTo), with our shelf.slot (the
// request may have used the wildcards) and, unless code is 0, the AoE
// error code.
func (c *session) reply(r *request, n int, code aoe.Error) disposition {
	if code != 0 {
		c.countError(code)
	}
	_, err := r.f.MarshalResponseHeaderTo(r.buf, c.mac, c.s.cfg.Shelf, c.s.cfg.Slot, code)
	mustEncode("response headers", err)
	r.resp = n
	return replyNow
}

// mustEncode panics if encoding a response failed. Every buffer holds the
// largest response, and the target encodes only values in range, so only
// a bug gets there.
func mustEncode(what string, err error) {
	if err != nil {
		panic(fmt.Sprintf("target: encode %s: %v", what, err))
	}
}

// fail answers with an AoE error: the E flag and code, and the first n
// bytes of the request as they are.
func (c *session) fail(r *request, code aoe.Error, n int) disposition {
	return c.reply(r, n, code)
}

// countError counts an AoE error response.
func (c *session) countError(code aoe.Error) {
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

// argRoom is where r's response argument goes: all of the buffer after the
// headers.
func (r *request) argRoom() []byte { return r.buf[aoe.FrameHeaderLen:] }

// ataData is the data of r's ATA response: n bytes after the headers.
func (r *request) ataData(n int) []byte { return r.buf[ataHeadersLen : ataHeadersLen+n] }

// ataDone answers the ATA request a with the given status and error
// registers and data bytes of data, already in place (see ataData).
func (c *session) ataDone(r *request, a *aoe.ATA, status, errReg uint8, data int) disposition {
	a.MarshalResponseHeaderTo(r.argRoom(), status, errReg)
	return c.reply(r, ataHeadersLen+data, 0)
}

// ataError answers the ATA request a with an ATA error (ERR and
// extraStatus in the status register, errReg in the error register) and
// counts it.
func (c *session) ataError(r *request, a *aoe.ATA, kind errorKind, extraStatus, errReg uint8) disposition {
	c.s.counters.errors[kind].Add(1)
	return c.ataDone(r, a, ataStatusFailed|extraStatus, errReg, 0)
}

// failATA turns the ATA response built in r into an ATA error, as
// ataError would have: for a response that waited for a sync that failed.
func (r *request) failATA(extraStatus, errReg uint8) error {
	arg := r.buf[aoe.FrameHeaderLen:r.resp]
	var resp aoe.ATA
	if err := resp.UnmarshalBinary(arg); err != nil {
		return fmt.Errorf("target: fail ATA response: %w", err)
	}
	resp.CmdStatus = ataStatusFailed | extraStatus
	resp.FeatureError = errReg
	resp.MarshalHeaderTo(arg)
	return nil
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
func (c *session) ata(r *request, wildcard bool, acc *access, canBlock bool) disposition {
	var a aoe.ATA
	if err := a.UnmarshalBinary(r.f.Arg); err != nil {
		return c.drop(dropShort)
	}
	cmd := a.CmdStatus
	r.op = ataOp(cmd)
	if wildcard && (a.IsWrite() || isWriteCommand(cmd)) {
		// A write to every target at once is never what anyone meant.
		return c.drop(dropWildcardWrite)
	}
	if cmd != aoe.ATAIdentifyDevice && acc.reservedAgainst(r.f.Src) {
		return c.fail(r, aoe.ErrorTargetReserved, ataHeadersLen)
	}
	switch cmd {
	case aoe.ATAIdentifyDevice:
		return c.identifyDevice(r, &a)
	case aoe.ATACheckPowerMode:
		return c.checkPowerMode(r, &a)
	case aoe.ATAFlushCache, aoe.ATAFlushCacheExt:
		return c.flushCache(r, &a)
	case aoe.ATAReadSectors, aoe.ATAReadSectorsExt, aoe.ATAWriteSectors, aoe.ATAWriteSectorsExt, aoe.ATAWriteFUAExt:
		return c.readWrite(r, &a, canBlock)
	}
	return c.ataError(r, &a, errATAAbort, 0, aoe.ATAErrorABRT)
}

// identifyDevice answers IDENTIFY DEVICE with the identify data, one
// sector.
func (c *session) identifyDevice(r *request, a *aoe.ATA) disposition {
	if a.IsWrite() || a.SectorCount != 1 || c.sectorsPerFrame() < 1 {
		return c.fail(r, aoe.ErrorBadArgument, ataHeadersLen)
	}
	copy(r.ataData(aoe.SectorSize), c.s.identify[:])
	return c.ataDone(r, a, aoe.ATAStatusDRDY, 0, aoe.SectorSize)
}

// checkPowerMode answers CHECK POWER MODE: always active or idle.
func (c *session) checkPowerMode(r *request, a *aoe.ATA) disposition {
	if a.IsWrite() {
		return c.fail(r, aoe.ErrorBadArgument, ataHeadersLen)
	}
	resp := *a
	resp.SectorCount = 0xff // active or idle
	return c.ataDone(r, &resp, aoe.ATAStatusDRDY, 0, 0)
}

// flushCache answers FLUSH CACHE once the syncer's next sync is done.
func (c *session) flushCache(r *request, a *aoe.ATA) disposition {
	if a.IsWrite() {
		return c.fail(r, aoe.ErrorBadArgument, ataHeadersLen)
	}
	c.ataDone(r, a, aoe.ATAStatusDRDY, 0, 0)
	return replyAfterSync
}

// readWrite checks a read or write against the command, the frame and the
// disk, then does it.
func (c *session) readWrite(r *request, a *aoe.ATA, canBlock bool) disposition {
	s := c.s
	cmd := a.CmdStatus
	write := isWriteCommand(cmd)
	lba := a.LBA
	if cmd == aoe.ATAReadSectors || cmd == aoe.ATAWriteSectors {
		var ok bool
		if lba, ok = a.LBA28(); !ok {
			return c.fail(r, aoe.ErrorBadArgument, ataHeadersLen)
		}
	}
	count := int(a.SectorCount)
	switch {
	case a.IsWrite() != write, count > c.sectorsPerFrame(), write && len(a.Data) < a.DataLen():
		return c.fail(r, aoe.ErrorBadArgument, ataHeadersLen)
	case write && s.cfg.ReadOnly:
		return c.ataError(r, a, errATAReadOnly, 0, aoe.ATAErrorABRT)
	case lba+uint64(count) > s.sectors:
		return c.ataError(r, a, errATAIDNF, 0, aoe.ATAErrorIDNF)
	case count == 0:
		return c.ataDone(r, a, aoe.ATAStatusDRDY, 0, 0)
	}
	if write {
		return c.write(r, a, lba, canBlock)
	}
	return c.read(r, a, lba, canBlock)
}

// read reads a's sectors from lba on into the response. Unless canBlock, a
// read that would wait for the device is not done (wouldBlock).
func (c *session) read(r *request, a *aoe.ATA, lba uint64, canBlock bool) disposition {
	s := c.s
	n := a.DataLen()
	dst := r.ataData(n)
	off := int64(lba) * aoe.SectorSize
	var err error
	switch {
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
		s.errLog.Error("read", "backend read failed", "err", err, "lba", lba, "sectors", int(a.SectorCount))
		return c.ataError(r, a, errATARead, 0, aoe.ATAErrorUNC)
	}
	s.counters.bytesRead.Add(uint64(n))
	return c.ataDone(r, a, aoe.ATAStatusDRDY, 0, n)
}

// write writes a's data from lba on. A write that must be durable (sync
// mode, or WRITE FUA EXT) is acknowledged after the syncer's next sync,
// or made durable in the same call when it is alone. Unless canBlock, a
// write that would wait for the device is not done (wouldBlock).
func (c *session) write(r *request, a *aoe.ATA, lba uint64, canBlock bool) disposition {
	s := c.s
	n := a.DataLen()
	data := a.Data[:n]
	off := int64(lba) * aoe.SectorSize
	needSync := s.cfg.SyncWrites || a.CmdStatus == aoe.ATAWriteFUAExt
	var err error
	durable := false
	if needSync && r.alone && c.durable != nil && c.syncer.idleForOne() {
		// A lone write: one durable write costs less than a write
		// and a sync, and no other write would share the sync.
		_, err = c.durable.WriteAtDurable(data, off)
		durable = !errors.Is(err, ErrDurableUnsupported)
	}
	if !durable {
		switch {
		case canBlock:
			_, err = s.cfg.Backend.WriteAt(data, off)
		case c.nonblocking == nil:
			return wouldBlock
		default:
			if _, err = c.nonblocking.TryWriteAt(data, off); errors.Is(err, ErrWouldBlock) {
				return wouldBlock
			}
		}
	}
	if err != nil {
		s.errLog.Error("write", "backend write failed", "err", err, "lba", lba, "sectors", int(a.SectorCount))
		return c.ataError(r, a, errATAWrite, aoe.ATAStatusDF, aoe.ATAErrorABRT)
	}
	s.counters.bytesWritten.Add(uint64(n))
	c.ataDone(r, a, aoe.ATAStatusDRDY, 0, 0)
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

// configArg sets arg to the argument of the target's Query Config
// responses. (It fills arg rather than return one: the copy of a returned
// struct is slower than the rest of a response.)
func (c *session) configArg(arg *aoe.Config, ccmd aoe.ConfigCommand, str []byte) {
	arg.BufferCount = uint16(c.s.cfg.BufferCount)
	arg.FirmwareVersion = c.s.firmware
	arg.SectorCount = uint8(c.sectorsPerFrame())
	arg.Version = aoe.Version
	arg.Command = ccmd
	arg.String = str
}

// queryConfig answers a Query Config request: read,
// test and test-prefix (silent on a mismatch), set (refused with error 4
// when another string is set) and force set.
func (c *session) queryConfig(r *request) disposition {
	s := c.s
	var req aoe.Config
	if req.UnmarshalBinary(r.f.Arg) != nil {
		// Answer a refused string with the request's command.
		if req.UnmarshalHeader(r.f.Arg) != nil {
			return c.drop(dropShort)
		}
		return c.configReply(r, req.Command, aoe.ErrorBadArgument)
	}
	ccmd := req.Command
	if ccmd > aoe.ConfigForceSet {
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
	var arg aoe.Config
	c.configArg(&arg, ccmd, s.configString)
	n, err := arg.MarshalTo(r.argRoom())
	s.stateMu.Unlock()
	mustEncode("Query Config response", err)
	return c.reply(r, aoe.FrameHeaderLen+n, code)
}

// macMask reads or edits the MAC mask list and answers with the list.
func (c *session) macMask(r *request) disposition {
	// The request's directives, then the list: on the stack, as a list
	// has at most 255 entries.
	var dirs [255]aoe.Directive
	req := aoe.MACMask{Directives: dirs[:0]}
	if req.UnmarshalHeader(r.f.Arg) != nil {
		return c.drop(dropShort)
	}
	switch req.Command {
	case aoe.MACMaskRead:
	case aoe.MACMaskEdit:
		if req.UnmarshalBinary(r.f.Arg) != nil {
			return c.fail(r, aoe.ErrorBadArgument, aoe.FrameHeaderLen+aoe.MACMaskHeaderLen)
		}
		failed, merr := c.s.editMask(req.Directives)
		if merr != aoe.MACMaskErrorNone {
			// AoE: the error, and the directives before the one that
			// failed (they took effect).
			return c.macMaskReply(r, &aoe.MACMask{Command: req.Command, Error: merr, Directives: req.Directives[:failed]})
		}
	default:
		return c.fail(r, aoe.ErrorBadArgument, aoe.FrameHeaderLen+aoe.MACMaskHeaderLen)
	}
	list := dirs[:0]
	for _, m := range c.s.access.Load().mask {
		list = append(list, aoe.Directive{Command: aoe.DirectiveNone, MAC: m})
	}
	return c.macMaskReply(r, &aoe.MACMask{Command: req.Command, Error: aoe.MACMaskErrorNone, Directives: list})
}

// macMaskReply answers a MAC Mask List request with resp.
func (c *session) macMaskReply(r *request, resp *aoe.MACMask) disposition {
	n, err := resp.MarshalTo(r.argRoom())
	mustEncode("MAC Mask List response", err)
	return c.reply(r, aoe.FrameHeaderLen+n, 0)
}

// editMask applies the directives in order and stops at the first that
// fails, reporting its index and the error.
func (s *Server) editMask(dirs []aoe.Directive) (failed int, merr aoe.MACMaskError) {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	old := s.access.Load()
	mask := slices.Clone(old.mask)
	failed = len(dirs)
	for i, d := range dirs {
		m := d.MAC
		switch d.Command {
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
func (c *session) reserveRelease(r *request) disposition {
	s := c.s
	// The request's addresses, on the stack: at most 255.
	var macs [255]aoe.MAC
	req := aoe.ReserveRelease{MACs: macs[:0]}
	if req.UnmarshalHeader(r.f.Arg) != nil {
		return c.drop(dropShort)
	}
	rcmd := req.Command
	var code aoe.Error
	switch rcmd {
	case aoe.ReserveRead:
	case aoe.ReserveSet, aoe.ReserveForceSet:
		if req.UnmarshalBinary(r.f.Arg) != nil {
			code = aoe.ErrorBadArgument
			break
		}
		if !s.setReserve(req.MACs, r.f.Src, rcmd == aoe.ReserveForceSet) {
			code = aoe.ErrorTargetReserved
		}
	default:
		code = aoe.ErrorBadArgument
	}
	// Every response, refusals included, lists the reservation in force.
	resp := aoe.ReserveRelease{Command: rcmd, MACs: s.access.Load().reserve}
	n, err := resp.MarshalTo(r.argRoom())
	mustEncode("Reserve/Release response", err)
	return c.reply(r, aoe.FrameHeaderLen+n, code)
}

// setReserve replaces the reserve list with macs, without repeats: always
// when forced, else only if the target is not reserved or is reserved to
// src. It reports whether it did.
func (s *Server) setReserve(macs []aoe.MAC, src aoe.MAC, force bool) bool {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	old := s.access.Load()
	if !force && old.reservedAgainst(src) {
		return false
	}
	list := make([]aoe.MAC, 0, len(macs))
	for _, m := range macs {
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
