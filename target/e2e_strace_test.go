package target_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

// straceHex prints b as strace -xx prints a string.
func straceHex(b []byte) string {
	var s strings.Builder
	for _, c := range b {
		fmt.Fprintf(&s, `\x%02x`, c)
	}
	return s.String()
}

// writeAck is the answer to a one-frame write at lba, as strace -xx shows a
// sendmmsg of it.
func writeAck(tag uint32, lba uint64) string {
	b := []byte(ackFrame(tag, lba))
	return `[{msg_hdr={msg_name=NULL, msg_namelen=0, msg_iov=[{iov_base="` + straceHex(b[:36]) +
		`", iov_len=36}, {iov_base="` + straceHex(make([]byte, 24)) + `", iov_len=24}], msg_iovlen=2, msg_controllen=0, msg_flags=0}, msg_len=60}], 1, 0`
}

// TestCheckSyncedAcks feeds the durability proof hand-made traces: it must
// accept a write acknowledged after a covering fdatasync, whatever the
// threads, and reject the orders that lose data.
func TestCheckSyncedAcks(t *testing.T) {
	const data = `"\xaa\xbb"...`
	ack := writeAck(0x80000001, 8)
	cases := []struct {
		name    string
		trace   string
		wantBad bool
	}{
		{"synced, split across threads", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096 <unfinished ...>
11 1.000002 recvmmsg(6, 0x1, 16, MSG_TRUNC, NULL) = -1 EAGAIN (Resource temporarily unavailable)
10 1.000003 <... pwrite64 resumed>) = 1024
12 1.000004 fdatasync(3 <unfinished ...>
--- SIGURG {si_signo=SIGURG, si_code=SI_TKILL, si_pid=1, si_uid=0} ---
12 1.000005 <... fdatasync resumed>) = 0
11 1.000006 sendmmsg(6,  <unfinished ...>
11 1.000007 <... sendmmsg resumed>` + ack[1:] + `) = 1
`, false},
		{"synced, one line each", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096) = 1024
10 1.000002 fdatasync(3) = 0
10 1.000003 sendmmsg(6, ` + ack + `) = 1
`, false},
		{"acknowledged before the sync returned", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096) = 1024
12 1.000002 fdatasync(3 <unfinished ...>
11 1.000003 sendmmsg(6, ` + ack + `) = 1
12 1.000004 <... fdatasync resumed>) = 0
`, true},
		{"sync started before the write returned", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096 <unfinished ...>
12 1.000002 fdatasync(3 <unfinished ...>
10 1.000003 <... pwrite64 resumed>) = 1024
12 1.000004 <... fdatasync resumed>) = 0
11 1.000005 sendmmsg(6, ` + ack + `) = 1
`, true},
		{"sync failed", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096) = 1024
10 1.000002 fdatasync(3) = -1 EIO (Input/output error)
10 1.000003 sendmmsg(6, ` + ack + `) = 1
`, true},
		{"sync of another write only", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 8192) = 1024
10 1.000002 fdatasync(3) = 0
10 1.000003 sendmmsg(6, ` + ack + `) = 1
`, true},
		{"durable write (pwritev2 RWF_DSYNC)", `
10 1.000001 pwritev2(3, [{iov_base=` + data + `, iov_len=1024}], 1, 4096, RWF_DSYNC) = 1024
10 1.000002 sendmmsg(6, ` + ack + `) = 1
`, false},
		{"durable write of another block", `
10 1.000001 pwritev2(3, [{iov_base=` + data + `, iov_len=1024}], 1, 8192, RWF_DSYNC) = 1024
10 1.000002 sendmmsg(6, ` + ack + `) = 1
`, true},
		{"pwritev2 without RWF_DSYNC, no sync", `
10 1.000001 pwritev2(3, [{iov_base=` + data + `, iov_len=1024}], 1, 4096, RWF_NOWAIT) = 1024
10 1.000002 sendmmsg(6, ` + ack + `) = 1
`, true},
		{"acknowledged before the durable write returned", `
10 1.000001 pwritev2(3, [{iov_base=` + data + `, iov_len=1024}], 1, 4096, RWF_DSYNC <unfinished ...>
11 1.000002 sendmmsg(6, ` + ack + `) = 1
10 1.000003 <... pwritev2 resumed>) = 1024
`, true},
		{"no sync at all (O_SYNC, as vblade -s)", `
10 1.000001 pwrite64(3, ` + data + `, 1024, 4096) = 1024
10 1.000002 write(4, "` + straceHex([]byte(ackFrame(0x80000001, 8))) + `", 60) = 60
`, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			calls, err := parseStrace(strings.NewReader(c.trace))
			if err != nil {
				t.Fatal(err)
			}
			acks, _, problems := checkSyncedAcks(calls)
			if acks != 1 {
				t.Fatalf("found %d acknowledged writes, want 1", acks)
			}
			if bad := len(problems) > 0; bad != c.wantBad {
				t.Errorf("problems %q; want some: %v", problems, c.wantBad)
			}
		})
	}
}

// ackFrame returns the frame of a write answer.
func ackFrame(tag uint32, lba uint64) string {
	arg, _ := (&aoe.ATA{Flags: aoe.ATAFlagExtended | aoe.ATAFlagWrite, SectorCount: 2, CmdStatus: aoe.ATAStatusDRDY, LBA: lba}).MarshalBinary()
	f := aoe.Frame{Dst: aoe.MAC{2, 0, 0, 0, 0, 2}, Src: aoe.MAC{2, 0, 0, 0, 0, 1},
		Header: aoe.Header{Version: 1, Flags: aoe.FlagResponse, Major: 1, Command: aoe.CommandATA, Tag: tag}, Arg: arg}
	b, _ := f.MarshalBinary()
	return string(b)
}

// FuzzParseStrace checks that no trace, however mangled, crashes the
// parser or the proof built on it.
func FuzzParseStrace(f *testing.F) {
	f.Add("10 1.000001 pwrite64(3, \"\\x00\"..., 1024, 4096) = 1024\n10 1.000002 fdatasync(3) = 0\n")
	f.Add("10 1.000001 fdatasync(3 <unfinished ...>\n10 1.000002 <... fdatasync resumed>) = 0\n")
	f.Add("10 1.000001 <... sendmmsg resumed>) = 1\n")
	f.Add("11 1.5 sendmmsg(6, " + writeAck(1, 2) + ") = 1\n")
	f.Add("+++ exited with 0 +++\n")
	f.Fuzz(func(t *testing.T, trace string) {
		calls, err := parseStrace(strings.NewReader(trace))
		if err != nil {
			return
		}
		checkSyncedAcks(calls)
	})
}
