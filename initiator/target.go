package initiator

import (
	"fmt"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/initiator/rtt"
)

// TargetState is a target's role in carrying its device's I/O.
type TargetState uint8

// Target states. A target moves between them as it answers or falls silent;
// the device's Policy decides which healthy targets are active.
const (
	// TargetActive targets carry new I/O.
	TargetActive TargetState = iota
	// TargetStandby targets are healthy but idle: the failover policy
	// keeps them for when the active one is scorned.
	TargetStandby
	// TargetScorned targets left a frame unanswered for longer than
	// Config.ScornTimeout, or fell silent while another target announced
	// itself. Their frames move to healthy targets, and they get new I/O
	// only when no target is healthy. The initiator probes them with Query
	// Config; an answer makes them healthy again at once, unless they
	// flap (see Config.ScornTimeout), when readmission waits a hold-off
	// that doubles with each scorn in a row.
	TargetScorned
)

var targetStateNames = [...]string{TargetActive: "active", TargetStandby: "standby", TargetScorned: "scorned"}

// String returns the state's name, as Stats shows it.
func (s TargetState) String() string {
	if int(s) < len(targetStateNames) {
		return targetStateNames[s]
	}
	return fmt.Sprintf("TargetState(%d)", uint8(s))
}

// MarshalText makes a TargetState readable in JSON.
func (s TargetState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a TargetState's name, so that Stats decode from JSON.
func (s *TargetState) UnmarshalText(b []byte) error {
	return unmarshalState(b, targetStateNames[:], "target", (*uint8)(s))
}

// unmarshalState finds b among names and stores its index in v.
func unmarshalState(b []byte, names []string, what string, v *uint8) error {
	for k, n := range names {
		if n == string(b) {
			*v = uint8(k)
			return nil
		}
	}
	return fmt.Errorf("initiator: unknown %s state %q", what, b)
}

// target is one path to a device: a MAC that answered Query Config for the
// device's shelf.slot, reached through one link. The device's mutex guards
// every field.
type target struct {
	link *link
	mac  aoe.MAC

	state TargetState
	since time.Duration // when state last changed (monotonic, see Initiator.now)

	// From the target's latest Query Config response.
	bufferCount  uint16
	firmware     uint16
	configString string
	// window is how many frames may be outstanding on the target: its
	// buffer count capped by Config.MaxWindow. cwnd is the part of it in
	// use: halved when a frame times out, grown back by one per window of
	// good answers. cutFrom is the cwnd before the latest cuts made for
	// one frame's timeouts (0 once undone), to restore if a copy of it
	// sent before the latest cut is answered after all; cutIndex and
	// cutFirstSent name that frame (its table entry, and when it was
	// first sent in this use of the entry).
	window, cwnd, acks int
	lastCut            time.Duration
	cutFrom            int
	cutIndex           uint16
	cutFirstSent       time.Duration
	// maxSectors is the most sectors a frame to this target may carry: the
	// lesser of its advertised count and what our link's MTU allows.
	maxSectors int
	// flushCmd is the FLUSH command this target takes; 0 means the
	// device's choice from IDENTIFY. It falls back to FLUSH CACHE when
	// FLUSH CACHE EXT is aborted.
	flushCmd uint8

	// rtt estimates its round trips: every transmission has its own tag,
	// so every answer is an unambiguous sample.
	rtt         rtt.Estimator
	outstanding int
	// queryRTT is the shortest round trip of the Query Config requests it
	// answered (0 before any): the network's and the target's receive
	// path's, without the storage time that its ATA round trips include.
	queryRTT time.Duration
	// dirty says the target acknowledged writes, not made durable by FUA,
	// since the last flush it confirmed.
	dirty     bool
	lastHeard time.Duration
	lastProbe time.Duration
	// lastATA is when the target last answered an ATA command well.
	lastATA time.Duration

	// Failover bookkeeping. strikes counts the scorns in a row that the
	// target did not recover from for long (see failover.strike);
	// holdUntil is the earliest an answer readmits it after the latest
	// one, and heldNoted says a held-off answer has been logged since.
	scornedAt, readmittedAt time.Duration
	strikes                 int
	holdUntil               time.Duration
	heldNoted               bool
	announcedAt             time.Duration

	// spurious counts the retransmissions found needless: the copy before
	// was answered after all.
	framesSent, retransmits, spurious, errors, scorns, announces uint64
	// failoversFrom counts the failovers that moved I/O away from it,
	// failoversTo those after which I/O resumed on it; lastStall is how
	// long I/O stalled in the latest failover away from it. lateWrites
	// counts its write copies answered after their fence expired.
	failoversFrom, failoversTo, lateWrites uint64
	lastStall                              time.Duration
}

// configure takes the target's Query Config response: its buffer count,
// capped by maxWindow, is the window, and its sector count, lowered to
// what the link's MTU allows, the frame size. fresh gives it its whole
// window at once.
func (t *target) configure(c *aoe.Config, maxWindow int, fresh bool) {
	t.bufferCount, t.firmware = c.BufferCount, c.FirmwareVersion
	if t.configString != string(c.String) {
		t.configString = string(c.String)
	}
	t.window = min(max(int(c.BufferCount), 1), maxWindow)
	if fresh || t.cwnd > t.window {
		t.cwnd, t.acks = t.window, 0
	}
	linkSectors := aoe.SectorsPerFrame(t.link.MTU())
	sectors := int(c.SectorCount)
	if sectors == 0 {
		sectors = linkSectors
	}
	t.maxSectors = min(sectors, linkSectors)
}

// healthy reports whether the target may carry I/O in normal operation.
func (t *target) healthy() bool {
	return t.state != TargetScorned && t.window > 0 && t.maxSectors > 0
}

// usable reports whether the target could carry a frame of the given size
// at all (healthy or not).
func (t *target) usable(sectors int) bool {
	return t.window > 0 && t.maxSectors >= sectors
}

// hasRoom reports whether another frame may be sent to the target now.
func (t *target) hasRoom() bool { return t.outstanding < t.cwnd }

func (t *target) setState(s TargetState, now time.Duration) {
	if t.state != s {
		t.state = s
		t.since = now
	}
}

// timedOut shrinks the window after a copy of the frame at table entry
// index, first sent at firstSent, timed out: at most once per RTO, so
// that a burst of timeouts from one loss counts once. The cwnd before the
// first cut for a frame is kept across its further timeouts.
func (t *target) timedOut(now, rto time.Duration, index uint16, firstSent time.Duration) {
	if now-t.lastCut < rto {
		return
	}
	if t.cutFrom == 0 || t.cutIndex != index || t.cutFirstSent != firstSent {
		t.cutFrom, t.cutIndex, t.cutFirstSent = t.cwnd, index, firstSent
	}
	t.lastCut = now
	t.cwnd = max(1, t.cwnd/2)
	t.acks = 0
}

// slowCopyAnswered takes an answer to a copy, sent at sent, of the frame
// at table entry index (first sent at firstSent), that came after a later
// copy was sent: the copy was slow (a disk busy reading ahead), not lost.
// The copies sent after it to this target, needless, are counted. If the
// latest cuts of the window were made for this frame's timeouts after the
// copy was sent, they are undone, as TCP undoes a spurious timeout's
// (Eifel, RFC 4015): otherwise every slow disk read would halve the
// window. The retransmission timeout has already learned the longer round
// trip from the answer, which names its copy. It reports whether the
// window grew.
func (t *target) slowCopyAnswered(index uint16, firstSent, sent time.Duration, needless int) bool {
	t.spurious += uint64(needless)
	if t.cutFrom == 0 || index != t.cutIndex || firstSent != t.cutFirstSent || sent >= t.lastCut {
		return false
	}
	grew := t.cutFrom > t.cwnd
	t.cwnd = max(t.cwnd, min(t.cutFrom, t.window))
	// The next timeout cuts at once: this one should not have.
	t.acks, t.cutFrom, t.lastCut = 0, 0, 0
	return grew
}

// answered grows the window back after a good answer.
func (t *target) answered() {
	if t.cwnd >= t.window {
		t.cwnd = t.window
		return
	}
	t.acks++
	if t.acks >= t.cwnd {
		t.cwnd++
		t.acks = 0
	}
}

// initialRTO is the retransmission timeout before any round trip was
// measured, the Linux driver's starting figure; the IDENTIFY exchange
// gives a sample at once.
const initialRTO = 250 * time.Millisecond

// Policy names how a device with several targets spreads its I/O.
type Policy string

// Policies.
const (
	// PolicyFailover sends all I/O to one active target and keeps the
	// others on standby; when the active one is scorned, a healthy standby
	// takes over and the scorned target's frames move to it at once.
	PolicyFailover Policy = "failover"
	// PolicyMultipath spreads I/O over every healthy target, each new
	// frame going to the one with the fewest outstanding.
	PolicyMultipath Policy = "multipath"
)

// policy is the seam through which a device's targets are chosen. Its
// methods are called with the device's mutex held.
type policy interface {
	// arrange assigns active and standby roles to the healthy targets
	// after a change (a target added, scorned or healthy again). When a
	// new active target must be chosen, prefer is taken if it is healthy
	// (a target that just announced itself is known to be alive).
	arrange(ts []*target, now time.Duration, prefer *target)
	// pick returns the target for a frame of the given size, other than
	// avoid, that has room for it now; nil when none has.
	pick(ts []*target, sectors int, avoid *target) *target
}

func newPolicy(p Policy) (policy, error) {
	switch p {
	case PolicyFailover, "":
		return failoverPolicy{}, nil
	case PolicyMultipath:
		return &multipathPolicy{}, nil
	}
	return nil, fmt.Errorf("initiator: unknown policy %q (want %q or %q)", p, PolicyFailover, PolicyMultipath)
}

// lastResort picks, when no target is healthy, the usable one heard from
// most recently, so I/O keeps trying rather than stalling.
func lastResort(ts []*target, sectors int, avoid *target) *target {
	var best *target
	for _, t := range ts {
		if t == avoid || !t.usable(sectors) || !t.hasRoom() {
			continue
		}
		if best == nil || t.lastHeard > best.lastHeard {
			best = t
		}
	}
	return best
}

func anyHealthy(ts []*target) bool {
	for _, t := range ts {
		if t.healthy() {
			return true
		}
	}
	return false
}

// failoverPolicy keeps one active target.
type failoverPolicy struct{}

func (failoverPolicy) arrange(ts []*target, now time.Duration, prefer *target) {
	var active *target
	for _, t := range ts {
		if t.state == TargetActive && t.healthy() {
			active = t
			break
		}
	}
	if active == nil && prefer != nil && prefer.healthy() {
		active = prefer
	}
	if active == nil {
		// The healthy target that flapped least, the earliest discovered
		// among equals.
		for _, t := range ts {
			if t.healthy() && (active == nil || t.strikes < active.strikes) {
				active = t
			}
		}
	}
	for _, t := range ts {
		if !t.healthy() {
			continue
		}
		if t == active {
			t.setState(TargetActive, now)
		} else {
			t.setState(TargetStandby, now)
		}
	}
}

func (failoverPolicy) pick(ts []*target, sectors int, avoid *target) *target {
	for _, t := range ts {
		if t.state == TargetActive && t != avoid && t.healthy() {
			if t.maxSectors >= sectors && t.hasRoom() {
				return t
			}
			return nil // wait for the active target's window
		}
	}
	if anyHealthy(ts) {
		return nil
	}
	return lastResort(ts, sectors, avoid)
}

// multipathPolicy makes every healthy target active.
type multipathPolicy struct{ next int }

func (*multipathPolicy) arrange(ts []*target, now time.Duration, _ *target) {
	for _, t := range ts {
		if t.healthy() {
			t.setState(TargetActive, now)
		}
	}
}

func (p *multipathPolicy) pick(ts []*target, sectors int, avoid *target) *target {
	var best *target
	healthy := false
	for k := range ts {
		t := ts[(p.next+k)%len(ts)]
		if !t.healthy() {
			continue
		}
		healthy = true
		if t == avoid || t.maxSectors < sectors || !t.hasRoom() {
			continue
		}
		if best == nil || t.outstanding < best.outstanding {
			best = t
		}
	}
	if best != nil {
		p.next++
		return best
	}
	if healthy {
		return nil
	}
	return lastResort(ts, sectors, avoid)
}
