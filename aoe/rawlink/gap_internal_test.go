//go:build linux

package rawlink

import (
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func TestEmptyGap(t *testing.T) {
	// The wait began 10 ms ago: a gap measured to now is at least that.
	since := time.Now().Add(-10 * time.Millisecond)
	for _, tc := range []struct {
		name    string
		arrived time.Time
		min     time.Duration
		max     time.Duration
	}{
		{"stamped after", since.Round(0).Add(30 * time.Microsecond), 30 * time.Microsecond, 30 * time.Microsecond},
		{"stamped just before", since.Round(0).Add(-2 * time.Microsecond), 0, 0},
		{"stamped long before", since.Round(0).Add(-time.Hour), 10 * time.Millisecond, time.Minute},
		{"stamped in the future", since.Round(0).Add(time.Hour), 10 * time.Millisecond, time.Minute},
		{"no stamp", time.Time{}, 10 * time.Millisecond, time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := emptyGap(since, tc.arrived); got < tc.min || got > tc.max {
				t.Errorf("emptyGap = %v, want %v to %v", got, tc.min, tc.max)
			}
		})
	}
}

// TestRingArrivalFake reads the stamp from a slot the test fills.
func TestRingArrivalFake(t *testing.T) {
	r := &rxRing{mem: make([]byte, 4096), blockSize: 4096, perBlock: 1, slotSize: 4096, slots: 1}
	hdr := (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.mem[0]))
	if !r.arrival().IsZero() {
		t.Fatal("stamp of a slot the kernel holds")
	}
	hdr.Sec, hdr.Nsec, hdr.Mac, hdr.Snaplen, hdr.Len = 1700000000, 123456789, uint16(tpacketHdrLen), 60, 60
	hdr.Status = unix.TP_STATUS_USER
	if got, want := r.arrival(), time.Unix(1700000000, 123456789); !got.Equal(want) {
		t.Errorf("arrival %v, want %v", got, want)
	}
	var none *rxRing
	if !none.arrival().IsZero() {
		t.Error("stamp without a ring")
	}
}

// TestUntilRingGapByStamp checks that a read ending a wait measures the
// gap to the stamp of the frame that ended it, not to when it took it.
func TestUntilRingGapByStamp(t *testing.T) {
	r := &rxRing{mem: make([]byte, 4096), blockSize: 4096, perBlock: 1, slotSize: 4096, slots: 1}
	hdr := (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.mem[0]))
	since := time.Now()
	stamp := since.Add(30 * time.Microsecond)
	hdr.Sec, hdr.Nsec, hdr.Mac, hdr.Snaplen, hdr.Len = uint32(stamp.Unix()), uint32(stamp.Nanosecond()), uint16(tpacketHdrLen), 60, 60
	hdr.Status = unix.TP_STATUS_USER
	l := &Link{ring: r, busyPoll: time.Millisecond}
	sc := &readScratch{l: l, emptySince: since}
	time.Sleep(2 * time.Millisecond) // taken well after it came
	if !sc.untilRing(0, func(int) bool { return true }) {
		t.Fatal("untilRing reported no frame")
	}
	if l.lastGap != 30*time.Microsecond {
		t.Errorf("gap %v, want the 30µs to the frame's stamp", l.lastGap)
	}
}
