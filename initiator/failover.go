package initiator

import (
	"fmt"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// This file holds how a device moves its I/O between targets: scorning a
// target that stops answering, readmitting it (with a hold-off for one
// that flaps), switching to a target that announces itself while the
// active one fails, measuring the stall, and the event log that Stats
// shows.

// EventKind names what a failover Event records.
type EventKind string

// Event kinds.
const (
	// EventTargetAdded: a new target answered Query Config or announced.
	EventTargetAdded EventKind = "target_added"
	// EventAnnounce: a target sent an unsolicited Query Config response
	// (tag 0), as a target does when it starts.
	EventAnnounce EventKind = "announce"
	// EventScorned: a target was scorned; Detail says why.
	EventScorned EventKind = "scorned"
	// EventHeldOff: a scorned target answered during its hold-off, so it
	// stays scorned until HeldUntil in TargetStats.
	EventHeldOff EventKind = "held_off"
	// EventReadmitted: a scorned target answered and is healthy again.
	EventReadmitted EventKind = "readmitted"
	// EventSwitched: the failover policy's active target changed from
	// Previous to Target.
	EventSwitched EventKind = "switched"
	// EventResumed: after a failover, a read or write completed again;
	// Stall says how long I/O waited.
	EventResumed EventKind = "resumed"
	// EventDeviceDown and EventDeviceUp: the device went down after
	// Config.DeadTimeout, and came back.
	EventDeviceDown EventKind = "device_down"
	EventDeviceUp   EventKind = "device_up"
	// EventPolicy: the device's policy was changed (Device.SetPolicy).
	EventPolicy EventKind = "policy"
	// EventLateWrite: a target answered a copy of a write after the fence
	// that guarded its sectors had expired: newer data written meanwhile
	// through another target may have been overwritten (see the package
	// documentation).
	EventLateWrite EventKind = "late_write"
)

// Event is one entry of a device's failover log.
type Event struct {
	Time time.Time `json:"time"`
	Kind EventKind `json:"kind"`
	// Target is the MAC of the target concerned, and Interface the link
	// it is reached through.
	Target    string `json:"target,omitempty"`
	Interface string `json:"interface,omitempty"`
	// Previous is the target that was active before a switch.
	Previous string `json:"previous,omitempty"`
	// Detail says more, in words.
	Detail string `json:"detail,omitempty"`
	// Stall is, for EventResumed, how long I/O waited.
	Stall time.Duration `json:"stall,omitempty"`
}

// EventLogSize is how many events a device keeps: the latest ones.
const EventLogSize = 100

// event is an Event as the device keeps it.
type event struct {
	at           time.Duration
	kind         EventKind
	target, prev *target
	detail       string
	stall        time.Duration
}

// eventLog is a ring of the latest EventLogSize events. A device keeps
// one, which its failover policy, engine and state changes write to.
type eventLog struct {
	ring [EventLogSize]event
	next int
	n    int
}

func (l *eventLog) add(e event) {
	l.ring[l.next] = e
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
}

// note adds an event about target t (or none).
func (l *eventLog) note(at time.Duration, kind EventKind, t *target, detail string) {
	l.add(event{at: at, kind: kind, target: t, detail: detail})
}

// events returns the log, oldest first, as Stats shows it.
func (l *eventLog) events(i *Initiator) []Event {
	out := make([]Event, 0, l.n)
	for k := 0; k < l.n; k++ {
		e := &l.ring[(l.next-l.n+k+len(l.ring))%len(l.ring)]
		ev := Event{Time: i.wallTime(e.at), Kind: e.kind, Detail: e.detail, Stall: e.stall}
		if e.target != nil {
			ev.Target, ev.Interface = e.target.mac.String(), e.target.link.name
		}
		if e.prev != nil {
			ev.Previous = e.prev.mac.String()
		}
		out = append(out, ev)
	}
	return out
}

// inflight is the failover policy's view of the engine: the frames
// waiting on a target. Its methods run under the device's mutex.
type inflight interface {
	// oldestOn returns when the frame waiting longest on t arrived there;
	// ok is false when no frame waits on t.
	oldestOn(t *target) (since time.Duration, ok bool)
	// moveOff sends the frames waiting on t, just scorned, to the healthy
	// targets with room; the others stay, with a fresh wait.
	moveOff(t *target, now time.Duration) (moved, kept int)
	// restartWaits gives the frames waiting on t a fresh scorn timeout.
	restartWaits(t *target, now time.Duration)
	// resendOverdue sends again at once the frames on t last sent at
	// least after ago.
	resendOverdue(t *target, after, now time.Duration)
}

// failover decides which of a device's targets carry its I/O. It keeps the
// targets and lets the policy assign their roles; it scorns a target that
// stops answering and moves its frames, readmits it (holding off one that
// flaps), switches to a target that announces itself while the active one
// is silent, measures the stall, and searches for targets while none is
// healthy. It is the engine's paths, and reaches the engine's frames
// through inflight. The device's mutex guards it: its methods run with it
// held.
type failover struct {
	addr
	ini    *Initiator
	frames inflight
	events *eventLog

	targets    []*target
	policy     policy
	policyName Policy

	// lastActive is the failover policy's latest active target.
	// announceBy, when set, announced itself at announceAt while other
	// targets were active: those that stay silent are scorned.
	// stallTarget, when set, is the target I/O moved away from at
	// stallFrom, until a read or write completes.
	lastActive, announceBy  *target
	announceAt              time.Duration
	stallTarget             *target
	stallFrom, lastStall    time.Duration
	failovers               uint64
	searchEvery, nextSearch time.Duration
}

// setPolicy makes p, named name, the device's policy at once, and reports
// whether that changed it. Frames in flight stay where they are.
func (f *failover) setPolicy(p policy, name Policy, now time.Duration) bool {
	if name == f.policyName {
		return false
	}
	f.policy, f.policyName = p, name
	// Roles are assigned afresh: under failover, the first active one
	// of the multipath set stays active.
	keep := f.firstActive()
	for _, t := range f.targets {
		if t.healthy() && !(name == PolicyFailover && t == keep) {
			t.setState(TargetStandby, now)
		}
	}
	f.arrange(now, nil)
	f.events.note(now, EventPolicy, nil, fmt.Sprintf("policy %s", name))
	return true
}

// firstActive returns the first active target, or nil.
func (f *failover) firstActive() *target {
	for _, t := range f.targets {
		if t.state == TargetActive {
			return t
		}
	}
	return nil
}

// learn adds or refreshes the target at mac on l that sent a Query Config
// response; announce says it was unsolicited (tag 0), as a target sends
// when it starts. rtt, unless negative, is how long the target took to
// answer our request. It returns the target and whether it is new.
func (f *failover) learn(l *link, mac aoe.MAC, c *aoe.Config, announce bool, rtt, now time.Duration) (t *target, isNew bool) {
	for _, x := range f.targets {
		if x.mac == mac && x.link == l {
			t = x
			break
		}
	}
	isNew = t == nil
	if isNew {
		t = &target{link: l, mac: mac, state: TargetStandby, since: now}
		f.targets = append(f.targets, t)
	}
	// A scorned target that announces itself has started again: the
	// window it advertises is free. The timeouts that cut it were those
	// of the frames sent to it while it was down, not congestion; kept,
	// they would throttle the I/O it takes over for many round trips.
	t.configure(c, f.ini.cfg.MaxWindow, isNew || (announce && t.state == TargetScorned))
	if rtt >= 0 && !announce && (t.queryRTT == 0 || rtt < t.queryRTT) {
		t.queryRTT = max(rtt, 1) // (0 means none yet)
	}
	if announce {
		t.announcedAt = now
		t.announces++
		f.events.note(now, EventAnnounce, t, "")
		if t.queryRTT == 0 {
			// Learn how fast it answers Query Config, for when it is
			// active and another target announces itself (see
			// announceGrace).
			_ = f.ini.sendQuery(l, mac, f.shelf, f.slot)
		}
	}
	if isNew {
		f.events.note(now, EventTargetAdded, t, fmt.Sprintf("window %d, %d sectors per frame", t.window, t.maxSectors))
		f.arrange(now, nil)
	}
	return t, isNew
}

// maxSectors returns the most data sectors a frame to any target carries.
func (f *failover) maxSectors() int {
	n := 0
	for _, t := range f.targets {
		n = max(n, t.maxSectors)
	}
	return n
}

// takeDirty appends to into the targets that acknowledged writes since
// their last flush, and marks them clean: a FLUSH is to go to each.
func (f *failover) takeDirty(into []*target) []*target {
	for _, t := range f.targets {
		if t.dirty {
			t.dirty = false
			into = append(into, t)
		}
	}
	return into
}

// Flap control. A target scorned again soon after it was readmitted is
// held off: answers readmit it only once holdOff(strikes) has passed since
// the scorn, and while on probation it is scorned after half the usual
// timeout. So a target that answers Query Config but never ATA costs I/O
// less and less often, instead of capturing it on every probe.
const maxStrikes = 7 // hold-off at most 64 scorn timeouts

// holdOff is how long after its scorn a target with the given strikes
// waits before an answer readmits it: none for a first scorn, then the
// scorn timeout doubled for each scorn in a row.
func (f *failover) holdOff(strikes int) time.Duration {
	if strikes <= 1 {
		return 0
	}
	return f.ini.cfg.ScornTimeout << (strikes - 1)
}

// scornAfter is how long a frame may wait on t before t is scorned:
// ScornTimeout, halved while t is on probation (readmitted after flapping
// and not yet shown to answer ATA).
func (f *failover) scornAfter(t *target) time.Duration {
	s := f.ini.cfg.ScornTimeout
	if t.strikes >= 2 && t.lastATA < t.readmittedAt {
		return s / 2
	}
	return s
}

// probeInterval is how often a scorned target is probed with Query Config.
func (f *failover) probeInterval() time.Duration {
	cfg := &f.ini.cfg
	return max(min(cfg.ScornTimeout/2, 500*time.Millisecond), cfg.RTOMin, time.Millisecond)
}

// The failover policy's side of paths, for the engine.

// pick returns the target the policy picks for a new frame.
func (f *failover) pick(sectors int, avoid *target) *target {
	return f.policy.pick(f.targets, sectors, avoid)
}

// flushTarget returns where a flush for t goes now: t itself, or a
// healthy target when t is scorned; nil to wait for room.
func (f *failover) flushTarget(t *target) *target {
	if t.state == TargetScorned && anyHealthy(f.targets) {
		return f.policy.pick(f.targets, 0, nil)
	}
	if t.window > 0 && t.hasRoom() {
		return t
	}
	return nil
}

// rto is the retransmission timeout for a new frame to t. A target never
// used yet (a standby) borrows the estimate of one that was: they share
// the network, and the standard initial 250 ms would slow down a failover
// whose first frame is lost.
func (f *failover) rto(t *target) time.Duration {
	cfg := &f.ini.cfg
	if t.rtt.Samples() == 0 {
		for _, o := range f.targets {
			if o.rtt.Samples() > 0 {
				return o.rtt.RTO(initialRTO, cfg.RTOMin, cfg.RTOMax)
			}
		}
	}
	return t.rtt.RTO(initialRTO, cfg.RTOMin, cfg.RTOMax)
}

// heard notes that t answered (how says with what): a scorned target is
// healthy again unless it is held off. A held-off target is readmitted
// anyway when no target is healthy: then it cannot take I/O from a better
// one. (One that announces itself while the active targets are silent
// takes over too: see announced.)
func (f *failover) heard(t *target, now time.Duration, how string) {
	t.lastHeard = now
	if t.state != TargetScorned || !t.usable(1) {
		return
	}
	switch {
	case now >= t.holdUntil || !anyHealthy(f.targets):
		f.readmit(t, now, how)
	case !t.heldNoted:
		t.heldNoted = true
		f.events.note(now, EventHeldOff, t, fmt.Sprintf("answered %s; flapping (strike %d): held off for %v more",
			how, t.strikes, (t.holdUntil-now).Round(time.Millisecond)))
	}
}

// waited scorns t when a frame has waited on it too long (see scornAfter).
func (f *failover) waited(t *target, wait, now time.Duration) {
	if limit := f.scornAfter(t); wait > limit {
		f.scorn(t, now, fmt.Sprintf("a frame went unanswered for %v", limit), nil)
	}
}

// progressed ends a stall being measured, as a read or write completes
// on t.
func (f *failover) progressed(t *target, now time.Duration) {
	if f.stallTarget != nil {
		f.endStall(t, now)
	}
}

// arrange lets the policy assign roles after a change and logs a switch
// of the failover policy's active target.
func (f *failover) arrange(now time.Duration, prefer *target) {
	f.policy.arrange(f.targets, now, prefer)
	if _, ok := f.policy.(failoverPolicy); !ok {
		f.lastActive = nil
		return
	}
	active := f.firstActive()
	if active == nil || active == f.lastActive {
		return
	}
	prev := f.lastActive
	f.lastActive = active
	if prev == nil {
		return // the first choice is no switch
	}
	f.events.add(event{at: now, kind: EventSwitched, target: active, prev: prev})
	f.ini.log.Warn("initiator: active target switched", "device", f.name, "from", prev.mac, "to", active.mac, "link", active.link.name)
}

// scorn scorns t, moves its frames to healthy targets where there is room
// (the scanner moves the rest as room frees up), and broadcasts Query
// Config to find targets that survive. A new active target is prefer if
// it is healthy. why says what happened, for the log.
func (f *failover) scorn(t *target, now time.Duration, why string, prefer *target) {
	f.beginStall(t, now)
	f.strike(t, now)
	if !anyHealthy(f.targets) {
		// A held-off target that answered since its scorn is alive:
		// better than none.
		for _, x := range f.targets {
			if x != t && x.state == TargetScorned && x.lastHeard > x.scornedAt && x.usable(1) {
				f.readmit(x, now, "probes; no other target is healthy")
			}
		}
	}
	f.arrange(now, prefer)
	moved, kept := f.frames.moveOff(t, now)
	detail := fmt.Sprintf("%s; %d frames moved, %d waiting; strike %d", why, moved, kept, t.strikes)
	if hold := f.holdOff(t.strikes); hold > 0 {
		detail += fmt.Sprintf(", held off %v", hold)
	}
	f.events.note(now, EventScorned, t, detail)
	f.ini.log.Warn("initiator: target scorned", "device", f.name, "target", t.mac, "link", t.link.name,
		"why", why, "frames_moved", moved, "frames_waiting", kept, "strikes", t.strikes, "held_off", f.holdOff(t.strikes))
	// Look for survivors, and for targets started elsewhere.
	if err := f.ini.broadcast(f.shelf, f.slot); err != nil {
		f.ini.log.Warn("initiator: search for targets", "device", f.name, "err", err)
	}
	f.searchEvery = 0
}

// strike marks t scorned and counts the strike: a target that was healthy
// for long since its last readmission starts over; one scorned again soon
// flaps, and is held off longer.
func (f *failover) strike(t *target, now time.Duration) {
	if t.strikes > 0 && now-t.readmittedAt > max(4*f.ini.cfg.ScornTimeout, 2*f.holdOff(t.strikes)) && t.readmittedAt >= t.scornedAt {
		t.strikes = 0
	}
	t.strikes = min(t.strikes+1, maxStrikes)
	t.holdUntil = now + f.holdOff(t.strikes)
	t.heldNoted = false
	t.setState(TargetScorned, now)
	t.scornedAt, t.lastProbe = now, now
	t.scorns++
}

// readmit makes a scorned target healthy again.
func (f *failover) readmit(t *target, now time.Duration, how string) {
	t.setState(TargetStandby, now)
	t.readmittedAt = now
	f.arrange(now, nil)
	f.frames.restartWaits(t, now)
	f.events.note(now, EventReadmitted, t, fmt.Sprintf("answered %s; strike %d", how, t.strikes))
	f.ini.log.Info("initiator: target answers again", "device", f.name, "target", t.mac, "link", t.link.name,
		"how", how, "state", t.state, "strikes", t.strikes)
}

// announced acts on an announce from x. Frames overdue on x are resent to
// it at once (it may have just restarted). A target starting elsewhere
// often means the active one was stopped or fenced (a cluster manager
// moving the target): every other active target is probed with Query
// Config, and scorned if it stays silent for announceGrace (see
// checkAnnounce), x taking over. The probe decides, not how long the
// active target has been silent: a live one in sync mode on a slow disk
// may say nothing for longer than its ATA round trips suggest, while it
// answers Query Config at once. An x that is held off (it flapped) takes
// over that way too, when the active targets are silent: scorn then
// readmits it, as better than none.
func (f *failover) announced(x *target, now time.Duration) {
	if !f.announcerAlive(x) {
		return
	}
	// Frames overdue on x itself were lost if it just restarted: resend
	// them now rather than after their backed-off timeout.
	f.frames.resendOverdue(x, f.rto(x), now)
	for _, t := range f.targets {
		if t == x || t.state != TargetActive {
			continue
		}
		t.lastProbe = now
		_ = f.ini.sendQuery(t.link, t.mac, f.shelf, f.slot)
		if f.announceBy == nil {
			f.ini.checks.Add(1)
			f.ini.rouse()
		}
		f.announceBy, f.announceAt = x, now
	}
	if !anyActive(f.targets) {
		f.arrange(now, x)
	}
}

// announcerAlive reports whether x, which announced itself, may take over
// from silent active targets: it is healthy, or held off but has answered
// since its scorn (the announce itself counts).
func (f *failover) announcerAlive(x *target) bool {
	return x.healthy() || (x.state == TargetScorned && x.lastHeard > x.scornedAt && x.usable(1))
}

// minAnnounceGrace is the least time an active target gets to answer the
// probe sent when another target announced itself: room for a busy host
// to schedule the target and the initiator.
const minAnnounceGrace = 20 * time.Millisecond

// announceGrace is how long an active target has to answer the probe sent
// when another target announced itself: four times its Query Config round
// trip or RTOMin, whichever is longer, within [minAnnounceGrace,
// ScornTimeout/2]; 40 ms on a LAN with the defaults. Not its ATA
// retransmission timeout: a target answers Query Config without touching
// its storage, while its ATA round trips include it (in sync mode an
// fdatasync, tens of milliseconds on a busy disk, which 2*rtt+8*rttdev
// turns into hundreds). A busy target that reads the probe only after the
// requests queued before it answers those meanwhile, and any answer
// counts. (If its storage stalls for longer than the grace while the
// probe waits behind it, a live target is scorned: the announcer, a live
// path to the same storage, takes the I/O, and the other one comes back
// as a standby when it answers.)
func (f *failover) announceGrace(t *target) time.Duration {
	cfg := &f.ini.cfg
	return min(max(4*max(t.queryRTT, cfg.RTOMin), minAnnounceGrace), cfg.ScornTimeout/2)
}

// checkAnnounce scorns the active targets that stayed silent since
// another target announced itself, once they had time to answer a probe.
func (f *failover) checkAnnounce(now time.Duration) {
	x := f.announceBy
	if x == nil {
		return
	}
	done := true
	for _, t := range f.targets {
		if t == x || t.state != TargetActive || t.lastHeard >= f.announceAt {
			continue
		}
		if now-f.announceAt < f.announceGrace(t) {
			done = false
			continue
		}
		if f.announcerAlive(x) {
			f.scorn(t, now, fmt.Sprintf("silent after %s announced itself", x.mac), x)
		}
	}
	if done {
		f.announceBy = nil
		f.ini.checks.Add(-1)
	}
}

func anyActive(ts []*target) bool {
	for _, t := range ts {
		if t.state == TargetActive {
			return true
		}
	}
	return false
}

// beginStall starts measuring a stall when t, about to be scorned, holds
// frames: from when I/O on it stopped progressing (its last answer, or the
// oldest frame's arrival on it if later) to the next read or write
// completed (see endStall).
func (f *failover) beginStall(t *target, now time.Duration) {
	from, ok := f.frames.oldestOn(t)
	if !ok {
		return // nothing waited on it
	}
	from = max(from, t.lastHeard)
	f.failovers++
	t.failoversFrom++
	if f.stallTarget == nil || from < f.stallFrom {
		f.stallFrom = from
	}
	f.stallTarget = t
}

// endStall ends a stall being measured, as a read or write completes on t.
func (f *failover) endStall(t *target, now time.Duration) {
	stall := now - f.stallFrom
	f.lastStall = stall
	f.stallTarget.lastStall = stall
	t.failoversTo++
	f.stallTarget = nil
	f.events.add(event{at: now, kind: EventResumed, target: t, stall: stall,
		detail: fmt.Sprintf("I/O stalled %v", stall.Round(time.Millisecond))})
	f.ini.log.Info("initiator: I/O resumed after failover", "device", f.name, "target", t.mac, "stall", stall)
}

// scan runs the failover policy's timers: the check of an announce, the
// probes of scorned targets (readmitting one whose hold-off ended while it
// kept answering them), and the search for targets while none is healthy.
func (f *failover) scan(now time.Duration) {
	f.checkAnnounce(now)
	probe := f.probeInterval()
	for _, t := range f.targets {
		if t.state != TargetScorned {
			continue
		}
		// Held off, it kept answering probes: readmit it now.
		if now >= t.holdUntil && t.lastHeard > t.scornedAt && now-t.lastHeard <= 2*probe && t.usable(1) {
			f.readmit(t, now, "probes during its hold-off")
			continue
		}
		if now-t.lastProbe >= probe {
			t.lastProbe = now
			_ = f.ini.sendQuery(t.link, t.mac, f.shelf, f.slot)
		}
	}
	f.search(now)
}

// search broadcasts Query Config for the device while no target is
// healthy, at intervals growing from the scorn timeout to the discovery
// interval, so that a target started elsewhere without announcing (or
// whose announce was lost) is found.
func (f *failover) search(now time.Duration) {
	cfg := &f.ini.cfg
	if len(f.targets) == 0 || anyHealthy(f.targets) {
		f.searchEvery = 0
		return
	}
	if f.searchEvery == 0 {
		f.searchEvery, f.nextSearch = cfg.ScornTimeout, now+cfg.ScornTimeout
		return
	}
	if now < f.nextSearch {
		return
	}
	if err := f.ini.broadcast(f.shelf, f.slot); err != nil {
		f.ini.log.Debug("initiator: search for targets", "device", f.name, "err", err)
	}
	f.searchEvery = min(2*f.searchEvery, max(cfg.DiscoverInterval, cfg.ScornTimeout))
	f.nextSearch = now + f.searchEvery
}
