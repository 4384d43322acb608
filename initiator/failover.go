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

// eventLog is a ring of the latest EventLogSize events.
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

func (d *Device) eventLocked(now time.Duration, kind EventKind, t *target, detail string) {
	d.events.add(event{at: now, kind: kind, target: t, detail: detail})
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
func (d *Device) holdOff(strikes int) time.Duration {
	if strikes <= 1 {
		return 0
	}
	return d.ini.cfg.ScornTimeout << (strikes - 1)
}

// scornAfterLocked is how long a frame may wait on t before t is scorned:
// ScornTimeout, halved while t is on probation (readmitted after flapping
// and not yet shown to answer ATA).
func (d *Device) scornAfterLocked(t *target) time.Duration {
	s := d.ini.cfg.ScornTimeout
	if t.strikes >= 2 && t.lastATA < t.readmittedAt {
		return s / 2
	}
	return s
}

// probeInterval is how often a scorned target is probed with Query Config.
func (d *Device) probeInterval() time.Duration {
	cfg := &d.ini.cfg
	return max(min(cfg.ScornTimeout/2, 500*time.Millisecond), cfg.RTOMin, time.Millisecond)
}

// rtoLocked is the retransmission timeout for a new frame to t. A target
// never used yet (a standby) borrows the estimate of one that was: they
// share the network, and the standard initial 250 ms would slow down a
// failover whose first frame is lost.
func (d *Device) rtoLocked(t *target) time.Duration {
	cfg := &d.ini.cfg
	if t.rtt.samples == 0 {
		for _, o := range d.targets {
			if o.rtt.samples > 0 {
				return o.rtt.rto(cfg.RTOMin, cfg.RTOMax)
			}
		}
	}
	return t.rtt.rto(cfg.RTOMin, cfg.RTOMax)
}

// arrangeLocked lets the policy assign roles after a change and logs a
// switch of the failover policy's active target.
func (d *Device) arrangeLocked(now time.Duration, prefer *target) {
	d.policy.arrange(d.targets, now, prefer)
	if _, ok := d.policy.(failoverPolicy); !ok {
		d.lastActive = nil
		return
	}
	active := d.firstActiveLocked()
	if active == nil || active == d.lastActive {
		return
	}
	prev := d.lastActive
	d.lastActive = active
	if prev == nil {
		return // the first choice is no switch
	}
	d.events.add(event{at: now, kind: EventSwitched, target: active, prev: prev})
	d.ini.log.Warn("initiator: active target switched", "device", d.name, "from", prev.mac, "to", active.mac, "link", active.link.name)
}

// scornLocked scorns t, moves its frames to healthy targets where there is
// room (the scanner moves the rest as room frees up), and broadcasts Query
// Config to find targets that survive. A new active target is prefer if
// it is healthy. why says what happened, for the log.
func (d *Device) scornLocked(t *target, now time.Duration, why string, prefer *target) {
	cfg := &d.ini.cfg
	d.beginStallLocked(t, now)
	// A target that was healthy for long since its last readmission
	// starts over; one scorned again soon flaps, and is held off longer.
	if t.strikes > 0 && now-t.readmittedAt > max(4*cfg.ScornTimeout, 2*d.holdOff(t.strikes)) && t.readmittedAt >= t.scornedAt {
		t.strikes = 0
	}
	t.strikes = min(t.strikes+1, maxStrikes)
	t.holdUntil = now + d.holdOff(t.strikes)
	t.heldNoted = false
	t.setState(TargetScorned, now)
	t.scornedAt, t.lastProbe = now, now
	t.scorns++
	if !anyHealthy(d.targets) {
		// A held-off target that answered since its scorn is alive:
		// better than none.
		for _, x := range d.targets {
			if x != t && x.state == TargetScorned && x.lastHeard > x.scornedAt && x.usable(1) {
				d.readmitLocked(x, now, "probes; no other target is healthy")
			}
		}
	}
	d.arrangeLocked(now, prefer)
	moved, kept := 0, 0
	for _, f := range d.frames {
		if f.state != frameActive || f.target != t {
			continue
		}
		if nt := d.policy.pick(d.targets, f.sectors, t); nt != nil && nt.healthy() {
			d.sendLocked(f, nt, now, true)
			moved++
		} else {
			f.onTargetSince = now
			kept++
		}
	}
	detail := fmt.Sprintf("%s; %d frames moved, %d waiting; strike %d", why, moved, kept, t.strikes)
	if hold := d.holdOff(t.strikes); hold > 0 {
		detail += fmt.Sprintf(", held off %v", hold)
	}
	d.eventLocked(now, EventScorned, t, detail)
	d.ini.log.Warn("initiator: target scorned", "device", d.name, "target", t.mac, "link", t.link.name,
		"why", why, "frames_moved", moved, "frames_waiting", kept, "strikes", t.strikes, "held_off", d.holdOff(t.strikes))
	// Look for survivors, and for targets started elsewhere.
	if err := d.ini.broadcast(d.shelf, d.slot); err != nil {
		d.ini.log.Warn("initiator: search for targets", "device", d.name, "err", err)
	}
	d.searchEvery = 0
}

// heardLocked notes that t answered (how says with what): a scorned target
// is healthy again unless it is held off, and a down device comes back. A
// held-off target is readmitted anyway when no target is healthy: then it
// cannot take I/O from a better one. (One that announces itself while
// the active targets are silent takes over too: see announcedLocked.)
func (d *Device) heardLocked(t *target, now time.Duration, how string) {
	t.lastHeard = now
	if t.state == TargetScorned && t.usable(1) {
		switch {
		case now >= t.holdUntil || !anyHealthy(d.targets):
			d.readmitLocked(t, now, how)
		case !t.heldNoted:
			t.heldNoted = true
			d.eventLocked(now, EventHeldOff, t, fmt.Sprintf("answered %s; flapping (strike %d): held off for %v more",
				how, t.strikes, (t.holdUntil-now).Round(time.Millisecond)))
		}
	}
	if d.state == DeviceDown {
		d.setStateLocked(DeviceFound, now)
		if d.identified {
			d.setStateLocked(DeviceUp, now)
		}
		d.eventLocked(now, EventDeviceUp, t, "")
		d.ini.log.Info("initiator: device back", "device", d.name, "target", t.mac)
	}
}

// readmitLocked makes a scorned target healthy again.
func (d *Device) readmitLocked(t *target, now time.Duration, how string) {
	t.setState(TargetStandby, now)
	t.readmittedAt = now
	d.arrangeLocked(now, nil)
	for _, f := range d.frames {
		if f.state == frameActive && f.target == t {
			f.onTargetSince = now // give them a fresh scorn timeout
		}
	}
	d.eventLocked(now, EventReadmitted, t, fmt.Sprintf("answered %s; strike %d", how, t.strikes))
	d.ini.log.Info("initiator: target answers again", "device", d.name, "target", t.mac, "link", t.link.name,
		"how", how, "state", t.state, "strikes", t.strikes)
}

// announcedLocked acts on an announce from x. Frames overdue on x are
// resent to it at once (it may have just restarted). A target starting
// elsewhere often means the active one was stopped or fenced (a cluster
// manager moving the target): every other active target is probed with
// Query Config, and scorned if it stays silent for announceGrace (see
// checkAnnounceLocked), x taking over. The probe decides, not how long the
// active target has been silent: a live one in sync mode on a slow disk
// may say nothing for longer than its ATA round trips suggest, while it
// answers Query Config at once. An x that is held off (it flapped) takes
// over that way too, when the active targets are silent: scornLocked
// then readmits it, as better than none.
func (d *Device) announcedLocked(x *target, now time.Duration) {
	if !d.announcerAliveLocked(x) {
		return
	}
	// Frames overdue on x itself were lost if it just restarted: resend
	// them now rather than after their backed-off timeout.
	rto := d.rtoLocked(x)
	for _, f := range d.frames {
		if f.state == frameActive && f.target == x && now-f.lastSent >= rto {
			d.sendLocked(f, x, now, true)
		}
	}
	for _, t := range d.targets {
		if t == x || t.state != TargetActive {
			continue
		}
		t.lastProbe = now
		_ = d.ini.sendQuery(t.link, t.mac, d.shelf, d.slot)
		if d.announceBy == nil {
			d.ini.checks.Add(1)
			d.ini.rouse()
		}
		d.announceBy, d.announceAt = x, now
	}
	if !anyActive(d.targets) {
		d.arrangeLocked(now, x)
	}
}

// announcerAliveLocked reports whether x, which announced itself, may take
// over from silent active targets: it is healthy, or held off but has
// answered since its scorn (the announce itself counts).
func (d *Device) announcerAliveLocked(x *target) bool {
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
func (d *Device) announceGrace(t *target) time.Duration {
	cfg := &d.ini.cfg
	return min(max(4*max(t.queryRTT, cfg.RTOMin), minAnnounceGrace), cfg.ScornTimeout/2)
}

// checkAnnounceLocked scorns the active targets that stayed silent since
// another target announced itself, once they had time to answer a probe.
func (d *Device) checkAnnounceLocked(now time.Duration) {
	x := d.announceBy
	if x == nil {
		return
	}
	done := true
	for _, t := range d.targets {
		if t == x || t.state != TargetActive || t.lastHeard >= d.announceAt {
			continue
		}
		if now-d.announceAt < d.announceGrace(t) {
			done = false
			continue
		}
		if d.announcerAliveLocked(x) {
			d.scornLocked(t, now, fmt.Sprintf("silent after %s announced itself", x.mac), x)
		}
	}
	if done {
		d.announceBy = nil
		d.ini.checks.Add(-1)
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

// beginStallLocked starts measuring a stall when t, about to be scorned,
// holds frames: from when I/O on it stopped progressing (its last answer,
// or the oldest frame's arrival on it if later) to the next read or write
// completed (see endStallLocked).
func (d *Device) beginStallLocked(t *target, now time.Duration) {
	from := time.Duration(-1)
	for _, f := range d.frames {
		if f.state == frameActive && f.target == t && (from < 0 || f.onTargetSince < from) {
			from = f.onTargetSince
		}
	}
	if from < 0 {
		return // nothing waited on it
	}
	from = max(from, t.lastHeard)
	d.failovers++
	if d.stallTarget == nil || from < d.stallFrom {
		d.stallFrom = from
	}
	d.stallTarget = t
}

// endStallLocked ends a stall being measured, as a read or write completes
// on t.
func (d *Device) endStallLocked(t *target, now time.Duration) {
	stall := now - d.stallFrom
	d.lastStall = stall
	d.stallTarget = nil
	d.events.add(event{at: now, kind: EventResumed, target: t, stall: stall,
		detail: fmt.Sprintf("I/O stalled %v", stall.Round(time.Millisecond))})
	d.ini.log.Info("initiator: I/O resumed after failover", "device", d.name, "target", t.mac, "stall", stall)
}

// expiredCopy is a transmission of a write that was still unanswered when
// the fence guarding its sectors expired; an answer to it afterwards means
// the target executed it late, maybe over newer data.
type expiredCopy struct {
	tag     uint32
	target  *target
	lba     uint64
	sectors int
	sent    time.Duration
}

// expireLocked ends a lingering write's fence, remembering its unanswered
// copies to recognise a late answer.
func (d *Device) expireLocked(f *frame) {
	for k := range f.tx {
		tx := &f.tx[k]
		if tx.target == nil || tx.answered {
			continue
		}
		d.expired[d.expiredNext] = expiredCopy{tag: makeTag(tx.gen, f.index), target: tx.target, lba: f.lba, sectors: f.sectors, sent: tx.sent}
		d.expiredNext = (d.expiredNext + 1) % len(d.expired)
	}
	d.releaseFrameLocked(f)
}

// lateAnswerLocked checks whether an answer that matches no awaited
// transmission is from a write copy whose fence expired, and reports it.
func (d *Device) lateAnswerLocked(tag uint32, src aoe.MAC, now time.Duration) {
	for k := range d.expired {
		c := &d.expired[k]
		if c.target == nil || c.tag != tag || c.target.mac != src {
			continue
		}
		d.counters.lateWrites++
		detail := fmt.Sprintf("write of %d sectors at LBA %d answered %v after it was sent", c.sectors, c.lba, (now - c.sent).Round(time.Millisecond))
		d.eventLocked(now, EventLateWrite, c.target, detail)
		d.ini.log.Error("initiator: a target executed a write after its fence expired; newer data at those sectors may be overwritten",
			"device", d.name, "target", c.target.mac, "lba", c.lba, "sectors", c.sectors, "age", now-c.sent)
		*c = expiredCopy{}
		return
	}
}

// searchLocked broadcasts Query Config for the device while no target is
// healthy, at intervals growing from the scorn timeout to the discovery
// interval, so that a target started elsewhere without announcing (or
// whose announce was lost) is found.
func (d *Device) searchLocked(now time.Duration) {
	cfg := &d.ini.cfg
	if len(d.targets) == 0 || anyHealthy(d.targets) {
		d.searchEvery = 0
		return
	}
	if d.searchEvery == 0 {
		d.searchEvery, d.nextSearch = cfg.ScornTimeout, now+cfg.ScornTimeout
		return
	}
	if now < d.nextSearch {
		return
	}
	if err := d.ini.broadcast(d.shelf, d.slot); err != nil {
		d.ini.log.Debug("initiator: search for targets", "device", d.name, "err", err)
	}
	d.searchEvery = min(2*d.searchEvery, max(cfg.DiscoverInterval, cfg.ScornTimeout))
	d.nextSearch = now + d.searchEvery
}
