package target_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/internal/testenv"
)

// The durability tests watch the real process with strace: every write
// ironblade -s acknowledges must be covered by an fdatasync that started
// after its pwrite returned and ended before the acknowledgement was sent,
// and FLUSH CACHE must cause an fdatasync in both modes.

// straceSyscalls are the system calls the tests trace: the backend's
// writes and syncs and every way a frame can enter or leave.
const straceSyscalls = "trace=pwrite64,pwritev2,fdatasync,fsync,sendmmsg,sendmsg,sendto,write,recvmmsg,recvmsg,recvfrom"

// tracer is strace attached to a running process.
type tracer struct {
	cmd    *exec.Cmd
	out    string
	stderr *testenv.SyncBuffer
	done   chan struct{} // closed once strace has exited
}

// startStrace attaches strace to every thread of pid. It skips the test
// when strace is not installed. poke makes the process do some traced
// work; it is called until the trace shows some, so the tracer is known
// to be attached.
func startStrace(t *testing.T, pid int, poke func()) *tracer {
	t.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		t.Skipf("e2e: needs strace to watch the process's system calls: %v", err)
	}
	tr := &tracer{out: filepath.Join(t.TempDir(), "strace.out"), stderr: new(testenv.SyncBuffer), done: make(chan struct{})}
	// -ttt: timestamps; -xx -s 64: frames as hex, enough for the AoE and
	// ATA headers; -f with -p: all threads.
	tr.cmd = exec.Command(path, "-f", "-ttt", "-xx", "-s", "64", "-e", straceSyscalls, "-o", tr.out, "-p", strconv.Itoa(pid))
	tr.cmd.Stderr = tr.stderr
	if err := tr.cmd.Start(); err != nil {
		t.Fatalf("e2e: start strace: %v", err)
	}
	go func() { _ = tr.cmd.Wait(); close(tr.done) }()
	t.Cleanup(func() {
		_ = tr.cmd.Process.Signal(os.Interrupt)
		select {
		case <-tr.done:
		case <-time.After(5 * time.Second):
			_ = tr.cmd.Process.Kill()
			<-tr.done
		}
	})
	testenv.WaitFor(t, 10*time.Second, "strace to trace something", func() bool {
		poke()
		if fi, err := os.Stat(tr.out); err == nil && fi.Size() > 0 {
			return true
		}
		select {
		case <-tr.done:
			t.Fatalf("e2e: strace exited without tracing anything:\n%s", tr.stderr.String())
		default:
		}
		return false
	})
	return tr
}

// stop waits until the trace shows an answer with each of tags (strace
// may log a call's end well after the process made it, and what it has not
// logged when it detaches is lost; the request shows too unless the target
// reads through a receive ring) and has gone quiet, then detaches strace
// and parses the trace.
func (tr *tracer) stop(t *testing.T, tags ...uint32) []traceCall {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	// The pause between reads is the subject, not a wait: strace has gone
	// quiet when the trace did not grow for that long. So it stays.
	for lastSize := int64(-1); ; time.Sleep(100 * time.Millisecond) {
		b, err := os.ReadFile(tr.out)
		if err != nil {
			t.Fatal(err)
		}
		logged := true
		for _, tag := range tags {
			escaped := fmt.Sprintf(`\x%02x\x%02x\x%02x\x%02x`, byte(tag>>24), byte(tag>>16), byte(tag>>8), byte(tag))
			logged = logged && strings.Count(string(b), escaped) >= 1
		}
		if logged && int64(len(b)) == lastSize {
			break // and strace has gone quiet
		}
		if time.Now().After(deadline) {
			t.Logf("e2e: strace has not logged tags %#x after 10 s; stopping it anyway", tags)
			break
		}
		lastSize = int64(len(b))
	}
	if err := tr.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatalf("e2e: stop strace: %v", err)
	}
	select {
	case <-tr.done:
	case <-time.After(10 * time.Second):
		t.Fatalf("e2e: strace still running 10 s after SIGINT:\n%s", tr.stderr.String())
	}
	f, err := os.Open(tr.out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	calls, err := parseStrace(f)
	if err != nil {
		t.Fatalf("e2e: parse strace output: %v", err)
	}
	return calls
}

// traceCall is one system call in an strace -f -ttt log. Its entry and
// exit are numbered in the order strace saw them (a call that strace
// printed on one line has both at the same number): since a traced thread
// is stopped until strace has taken its event, that order is the order in
// which the calls started and returned.
type traceCall struct {
	pid          int
	name         string
	start, end   int     // event numbers of the entry and the exit
	startT, endT float64 // their timestamps, in seconds
	args         string  // the arguments as printed, entry and exit parts joined
	ret          string  // the return value; "" if the call never returned in the trace
	// off is a pwrite64's or pwritev2's file offset, -1 for other calls;
	// dsync is set for a pwritev2 with RWF_DSYNC or RWF_SYNC, durable when
	// it returns; frames are the AoE frames a send or receive carried.
	// parseStrace fills them in.
	off    int64
	dsync  bool
	frames [][]byte
}

var (
	straceLine    = regexp.MustCompile(`^(\d+)\s+(\d+\.\d+)\s+(.*)$`)
	straceResumed = regexp.MustCompile(`^<\.\.\. (\w+) resumed>(.*)$`)
	straceCall    = regexp.MustCompile(`^(\w+)\((.*)$`)
	straceReturn  = regexp.MustCompile(`\)\s+= (-?\d+|\?)[^=]*$`)
	stracePwrite  = regexp.MustCompile(`^\d+, "[^"]*"(?:\.\.\.)?, (\d+), (\d+)`)
	stracePwritev = regexp.MustCompile(`\], (\d+), (\d+), ([A-Z_|0-9]+)\)`)
	straceIOVBase = regexp.MustCompile(`iov_base="((?:\\x[0-9a-f]{2})*)"`)
	straceString  = regexp.MustCompile(`"((?:\\x[0-9a-f]{2})*)"`)
)

// parseStrace reads the output of strace -f -ttt -xx: one call a line, or
// an "<unfinished ...>" line and a "<... name resumed>" line per call.
// Signals, exits and other notes are skipped.
func parseStrace(r io.Reader) ([]traceCall, error) {
	var calls []traceCall
	open := make(map[int]int) // pid -> index in calls of its unfinished call
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for seq := 0; sc.Scan(); seq++ {
		m := straceLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pid, _ := strconv.Atoi(m[1])
		ts, _ := strconv.ParseFloat(m[2], 64)
		rest := m[3]
		if rm := straceResumed.FindStringSubmatch(rest); rm != nil {
			i, ok := open[pid]
			if !ok || calls[i].name != rm[1] {
				return nil, fmt.Errorf("line %d: %s resumed without its start", seq+1, rm[1])
			}
			delete(open, pid)
			c := &calls[i]
			c.end, c.endT = seq, ts
			c.args += rm[2]
			if rv := straceReturn.FindStringSubmatch(rm[2]); rv != nil {
				c.ret = rv[1]
			}
			continue
		}
		cm := straceCall.FindStringSubmatch(rest)
		if cm == nil {
			continue // "--- SIGURG ---", "+++ exited +++" and the like
		}
		c := traceCall{pid: pid, name: cm[1], start: seq, startT: ts, end: seq, endT: ts, args: cm[2]}
		if strings.HasSuffix(rest, "<unfinished ...>") {
			c.end, c.endT = -1, 0
			open[pid] = len(calls)
		} else if rv := straceReturn.FindStringSubmatch(cm[2]); rv != nil {
			c.ret = rv[1]
		}
		calls = append(calls, c)
	}
	for i := range calls {
		c := &calls[i]
		c.off = -1
		if m := stracePwrite.FindStringSubmatch(c.args); c.name == "pwrite64" && m != nil {
			c.off, _ = strconv.ParseInt(m[2], 10, 64)
		}
		if m := stracePwritev.FindStringSubmatch(c.args); c.name == "pwritev2" && m != nil {
			c.off, _ = strconv.ParseInt(m[2], 10, 64)
			for _, flag := range strings.Split(m[3], "|") {
				c.dsync = c.dsync || flag == "RWF_DSYNC" || flag == "RWF_SYNC"
			}
		}
		if c.sends() || c.receives() {
			c.frames = decodeFrames(c.args)
		}
	}
	return calls, sc.Err()
}

// finished reports whether the call returned within the trace.
func (c *traceCall) finished() bool { return c.end >= 0 && c.ret != "" && c.ret != "?" }

// decodeFrames decodes the AoE frames (as far as strace printed them) in
// a call's arguments: the iovecs of a sendmmsg or recvmmsg, or the buffer
// of a sendto or write.
func decodeFrames(args string) [][]byte {
	re := straceString
	if strings.Contains(args, "iov_base=") {
		re = straceIOVBase
	}
	var frames [][]byte
	for _, m := range re.FindAllStringSubmatch(args, -1) {
		b, err := hex.DecodeString(strings.ReplaceAll(m[1], `\x`, ""))
		if _, ok := frameHeaders(b); err != nil || !ok {
			continue
		}
		frames = append(frames, b)
	}
	return frames
}

// sends reports whether the call sends frames.
func (c *traceCall) sends() bool {
	switch c.name {
	case "sendmmsg", "sendmsg", "sendto", "write":
		return true
	}
	return false
}

// receives reports whether the call receives frames.
func (c *traceCall) receives() bool {
	switch c.name {
	case "recvmmsg", "recvmsg", "recvfrom":
		return true
	}
	return false
}

// isSync reports whether the call is a completed, successful sync.
func (c *traceCall) isSync() bool {
	return (c.name == "fdatasync" || c.name == "fsync") && c.finished() && c.ret == "0"
}

// frameHeaders decodes an AoE frame's headers; ok is false if f is not
// an AoE frame.
func frameHeaders(f []byte) (hdr aoe.Frame, ok bool) {
	return hdr, hdr.UnmarshalBinary(f) == nil
}

// frameTag returns an AoE frame's tag, or 0 if f is not an AoE frame.
func frameTag(f []byte) uint32 {
	hdr, _ := frameHeaders(f)
	return hdr.Tag
}

// syncBetween returns the first successful sync that started after event
// after and returned before event before, or nil.
func syncBetween(calls []traceCall, after, before int) *traceCall {
	for i := range calls {
		c := &calls[i]
		if c.isSync() && c.start > after && c.end < before {
			return c
		}
	}
	return nil
}

// syncAfterTime returns the first successful sync that started after the
// time after (Unix seconds) and returned before event before, or nil.
func syncAfterTime(calls []traceCall, after float64, before int) *traceCall {
	for i := range calls {
		c := &calls[i]
		if c.isSync() && c.startT > after && c.end < before {
			return c
		}
	}
	return nil
}

// ackedWrite is a successful ATA write answer found in a trace.
type ackedWrite struct {
	lba  uint64
	tag  uint32
	send *traceCall
}

// ackedWrites lists the answers to ATA writes that report success.
func ackedWrites(calls []traceCall) []ackedWrite {
	var acks []ackedWrite
	for i := range calls {
		c := &calls[i]
		if !c.sends() {
			continue
		}
		for _, f := range c.frames {
			var fr aoe.Frame
			var a aoe.ATA
			if fr.UnmarshalBinary(f) != nil || !fr.IsResponse() || fr.Flags&aoe.FlagError != 0 ||
				fr.Command != aoe.CommandATA || a.UnmarshalBinary(fr.Arg) != nil {
				continue
			}
			if a.IsWrite() && a.CmdStatus&(aoe.ATAStatusError|aoe.ATAStatusDF) == 0 {
				acks = append(acks, ackedWrite{lba: a.LBA, tag: fr.Tag, send: c})
			}
		}
	}
	return acks
}

// lastPwrite returns the last pwrite64 or pwritev2 of off that returned
// before event before, or nil.
func lastPwrite(calls []traceCall, off int64, before int) *traceCall {
	var last *traceCall
	for i := range calls {
		c := &calls[i]
		if c.off != off || !c.finished() || c.end >= before {
			continue
		}
		if n, _ := strconv.Atoi(c.ret); n > 0 {
			last = c
		}
	}
	return last
}

// checkSyncedAcks checks, for every acknowledged write in the trace, that
// an fdatasync started after its pwrite returned and returned before the
// acknowledgement was sent, or that the write was itself durable (a
// pwritev2 with RWF_DSYNC, which returns once its data is) and returned
// before it. It returns how many acknowledgements it
// checked, how many syncs the trace holds, and what it found wrong.
func checkSyncedAcks(calls []traceCall) (acks, syncs int, problems []string) {
	for i := range calls {
		if calls[i].isSync() {
			syncs++
		}
	}
	for _, ack := range ackedWrites(calls) {
		acks++
		pw := lastPwrite(calls, int64(ack.lba)*aoe.SectorSize, ack.send.start)
		var sync *traceCall
		if pw != nil && !pw.dsync {
			sync = syncBetween(calls, pw.end, ack.send.start)
		}
		switch {
		case pw != nil && pw.dsync:
			if pw.endT > ack.send.startT {
				problems = append(problems, fmt.Sprintf("write at LBA %d: timestamps out of order: durable pwritev2 returned %.6f, sent %.6f",
					ack.lba, pw.endT, ack.send.startT))
			}
		case pw == nil:
			problems = append(problems, fmt.Sprintf("write at LBA %d (tag %#x) acknowledged at %.6f with no pwrite64 before it",
				ack.lba, ack.tag, ack.send.startT))
		case sync == nil:
			problems = append(problems, fmt.Sprintf("write at LBA %d (tag %#x): pwrite64 returned at %.6f, acknowledged at %.6f with no fdatasync in between",
				ack.lba, ack.tag, pw.endT, ack.send.startT))
		case sync.startT < pw.endT || sync.endT > ack.send.startT:
			problems = append(problems, fmt.Sprintf("write at LBA %d: timestamps out of order: pwrite64 returned %.6f, fdatasync %.6f-%.6f, sent %.6f",
				ack.lba, pw.endT, sync.startT, sync.endT, ack.send.startT))
		}
	}
	return acks, syncs, problems
}

// flushFrames sends FLUSH CACHE EXT (0xEA) and FLUSH CACHE (0xE7) with
// tags of the test's choosing, waits for their successful answers and
// returns the tags, and when each was sent (Unix seconds, as strace
// prints them).
func (r *rig) flushFrames(t *testing.T, tagBase uint32) (tags []uint32, sent []float64) {
	t.Helper()
	for i, cmd := range []uint8{aoe.ATAFlushCacheExt, aoe.ATAFlushCache} {
		tag := tagBase + uint32(i)
		arg, _ := (&aoe.ATA{Flags: aoe.ATAFlagExtended, CmdStatus: cmd}).MarshalBinary()
		f := aoe.Frame{Dst: r.veth.MACA, Src: r.veth.MACB, Header: aoe.Header{Version: aoe.Version, Major: 1, Command: aoe.CommandATA, Tag: tag}, Arg: arg}
		b, err := f.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		sent = append(sent, float64(time.Now().UnixNano())/1e9)
		if err := r.client.SendRaw(b); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := r.client.Expect(ctx, func(f *aoe.Frame) bool { return f.IsResponse() && f.Tag == tag })
		cancel()
		if err != nil {
			t.Fatalf("FLUSH %#02x: no answer: %v", cmd, err)
		}
		var a aoe.ATA
		if resp.Flags&aoe.FlagError != 0 || a.UnmarshalBinary(resp.Arg) != nil || a.CmdStatus&aoe.ATAStatusError != 0 {
			t.Fatalf("FLUSH %#02x: answer flags %#x, status %#02x, error %#02x; want success", cmd, resp.Flags, a.CmdStatus, a.FeatureError)
		}
		tags = append(tags, tag)
	}
	return tags, sent
}

// proveFlushSyncs checks that for each flush tag an fdatasync started
// after the request was received and returned before its answer was sent.
// A target reading through a receive ring receives without a system call:
// then the sync must have started after the request was sent (sent, the
// client's clock, which strace shares), which is later still.
func proveFlushSyncs(t *testing.T, calls []traceCall, tags []uint32, sent []float64) {
	t.Helper()
	for i, tag := range tags {
		recv, send := -1, -1
		for j := range calls {
			c := &calls[j]
			for _, f := range c.frames {
				if frameTag(f) != tag {
					continue
				}
				hdr, _ := frameHeaders(f)
				isResp := hdr.IsResponse()
				switch {
				case c.receives() && !isResp && recv < 0 && c.finished():
					recv = c.end
				case c.sends() && isResp && send < 0:
					send = c.start
				}
			}
		}
		name := []string{"FLUSH CACHE EXT", "FLUSH CACHE"}[i]
		if send < 0 {
			t.Errorf("%s (tag %#x): trace lacks its answer", name, tag)
			continue
		}
		if recv < 0 {
			if syncAfterTime(calls, sent[i], send) == nil {
				t.Errorf("%s (tag %#x): no fdatasync between sending it (%.6f, not received by a system call) and answering it", name, tag, sent[i])
			}
			continue
		}
		if syncBetween(calls, recv, send) == nil {
			t.Errorf("%s (tag %#x): no fdatasync between receiving it and answering it", name, tag)
		}
	}
}

// testE2ESyncDurability runs ironblade -s under strace while the client
// writes at queue depth 16, and proves from the trace that no write was
// acknowledged before an fdatasync covering it had returned.
func testE2ESyncDurability(t *testing.T, bin string) {
	r := newRig(t, bin, 1500)
	disk := newDisk(t, 8<<11)
	b := r.start(t, "-s", "1", "0", r.veth.IfA, disk)
	dev := r.discover(t, 1, 0)
	tr := startStrace(t, b.Cmd.Process.Pid, func() { r.discover(t, 1, 0) })

	size := 1 << 20
	if testing.Short() {
		size = 256 << 10
	}
	data := aoetest.RandomBytes(size)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	if err := r.client.WriteAt(ctx, dev, data, 0, 16); err != nil {
		t.Fatalf("write at qd 16 under strace: %v", err)
	}
	took := time.Since(start)
	// Then one write at a time: each comes alone, and is written durably
	// in one pwritev2 (RWF_DSYNC) rather than written and synced.
	const lone = 32
	loneData := aoetest.RandomBytes(lone * aoe.SectorsPerFrame(1500) * aoe.SectorSize)
	if err := r.client.WriteAt(ctx, dev, loneData, int64(size), 1); err != nil {
		t.Fatalf("write at qd 1 under strace: %v", err)
	}
	tags, sent := r.flushFrames(t, 0x0f1a0000)
	calls := tr.stop(t, tags...)
	stopBlade(t, b)
	onDisk, err := os.ReadFile(disk)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk[:size], data) || !bytes.Equal(onDisk[size:size+len(loneData)], loneData) {
		t.Errorf("the file does not hold what was written at queue depth 16 (%v) and then one at a time (%v)",
			bytes.Equal(onDisk[:size], data), bytes.Equal(onDisk[size:size+len(loneData)], loneData))
	}
	durable := 0
	for i := range calls {
		if calls[i].dsync && calls[i].finished() {
			durable++
		}
	}
	if durable < lone/2 {
		t.Errorf("%d durable pwritev2 calls for %d writes sent one at a time, want most of them", durable, lone)
	}

	acks, syncs, problems := checkSyncedAcks(calls)
	for i, p := range problems {
		if i == 10 {
			t.Errorf("... and %d more", len(problems)-i)
			break
		}
		t.Error(p)
	}
	if want := size / (aoe.SectorsPerFrame(1500) * aoe.SectorSize); acks < want {
		t.Errorf("the trace shows %d acknowledged writes, want at least the %d the client needed", acks, want)
	}
	proveFlushSyncs(t, calls, tags, sent)
	t.Logf("%d acknowledged writes (%v under strace at queue depth 16) covered by %d fdatasyncs: %.1f writes per sync;"+
		" then %d of %d lone writes durable in one pwritev2",
		acks, took.Round(time.Millisecond), syncs, float64(acks)/float64(max(syncs, 1)), durable, lone)
}

// testE2EFlushSyncs runs ironblade without -s under strace: writes are
// answered without waiting for a sync, and FLUSH CACHE (EXT) still gets an
// fdatasync before its answer.
func testE2EFlushSyncs(t *testing.T, bin string) {
	r := newRig(t, bin, 9000)
	disk := newDisk(t, 8<<11)
	b := r.start(t, "1", "0", r.veth.IfA, disk)
	dev := r.discover(t, 1, 0)
	tr := startStrace(t, b.Cmd.Process.Pid, func() { r.discover(t, 1, 0) })

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.client.WriteAt(ctx, dev, aoetest.RandomBytes(256<<10), 0, 16); err != nil {
		t.Fatalf("write under strace: %v", err)
	}
	tags, sent := r.flushFrames(t, 0x0f1b0000)
	calls := tr.stop(t, tags...)
	stopBlade(t, b)
	proveFlushSyncs(t, calls, tags, sent)
	firstFlush := firstFrameEvent(calls, tags[0])
	syncsBeforeFlush := 0
	for i := range calls {
		if calls[i].isSync() && calls[i].start < firstFlush {
			syncsBeforeFlush++
		}
	}
	t.Logf("without -s: %d acknowledged writes, %d fdatasyncs before the first FLUSH", len(ackedWrites(calls)), syncsBeforeFlush)
}

// firstFrameEvent returns the event number of the first call that carries
// a frame with the tag, or -1.
func firstFrameEvent(calls []traceCall, tag uint32) int {
	for i := range calls {
		for _, f := range calls[i].frames {
			if frameTag(f) == tag {
				return calls[i].start
			}
		}
	}
	return -1
}
