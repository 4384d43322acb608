package initiator

import (
	"sort"
	"time"
)

// Stats is a snapshot of an Initiator: its settings, its devices and their
// targets. It encodes to JSON as is (durations in nanoseconds).
type Stats struct {
	Config  ConfigStats   `json:"config"`
	Devices []DeviceStats `json:"devices"`
}

// ConfigStats are the tunables an Initiator runs with, defaults filled in
// (see Config for each).
type ConfigStats struct {
	ScornTimeout     time.Duration `json:"scorn_timeout"`
	RTOMin           time.Duration `json:"rto_min"`
	RTOMax           time.Duration `json:"rto_max"`
	DiscoverInterval time.Duration `json:"discover_interval"`
	// DeadTimeout is negative when I/O is retried forever.
	DeadTimeout time.Duration `json:"dead_timeout"`
	MaxWindow   int           `json:"max_window"`
	Policy      Policy        `json:"policy"`
}

// DeviceStats describes one device.
type DeviceStats struct {
	Name  string      `json:"name"`
	Shelf uint16      `json:"shelf"`
	Slot  uint8       `json:"slot"`
	State DeviceState `json:"state"`
	// Since is when State last changed.
	Since time.Time `json:"since"`
	// Size is the capacity in bytes (0 before IDENTIFY).
	Size     int64  `json:"size"`
	Model    string `json:"model,omitempty"`
	Serial   string `json:"serial,omitempty"`
	Firmware string `json:"firmware,omitempty"`
	LBA48    bool   `json:"lba48"`
	// FUA says writes with FUA use WRITE FUA EXT rather than a flush.
	FUA    bool   `json:"fua"`
	Policy Policy `json:"policy"`
	// Active lists the MACs of the targets that carry new I/O.
	Active []string `json:"active"`
	// Queued counts requests waiting for room in a window.
	Queued int `json:"queued"`
	// Lingering counts completed writes still fencing their sectors
	// against overlapping writes (see the package documentation).
	Lingering int `json:"lingering"`

	Reads        uint64 `json:"reads"`
	Writes       uint64 `json:"writes"`
	Flushes      uint64 `json:"flushes"`
	BytesRead    uint64 `json:"bytes_read"`
	BytesWritten uint64 `json:"bytes_written"`
	// IOErrors counts requests that failed.
	IOErrors uint64 `json:"io_errors"`
	// Stale, Duplicate and WrongSource count answers ignored: matching no
	// transmission awaited, repeating one already taken, or carrying a
	// right tag from the wrong MAC or link.
	Stale       uint64 `json:"stale"`
	Duplicate   uint64 `json:"duplicate"`
	WrongSource uint64 `json:"wrong_source"`
	// Fenced counts the times a write waited for an overlapping earlier
	// write's stray copies.
	Fenced uint64 `json:"fenced"`
	// LateWrites counts write copies a target answered after the fence
	// guarding their sectors had expired (see EventLateWrite): each may
	// have overwritten newer data. It should stay 0.
	LateWrites uint64 `json:"late_writes"`
	// Failovers counts the times I/O waiting on a target moved away from
	// it (the target was scorned with frames outstanding).
	Failovers uint64 `json:"failovers"`
	// LastStall is how long I/O waited in the latest failover: from when
	// I/O on the failed target stopped progressing to the next read or
	// write completed. Zero before any.
	LastStall time.Duration `json:"last_stall"`
	// Latency holds the durations of the reads, writes and flushes that
	// succeeded, in that order.
	Latency []LatencyHistogram `json:"latency"`

	Targets []TargetStats `json:"targets"`
	// Events is the failover log, oldest first: the latest EventLogSize
	// targets added, announces, scorns, readmissions, switches, stalls
	// ended and device state changes.
	Events []Event `json:"events"`
}

// TargetStats describes one target of a device.
type TargetStats struct {
	MAC       string      `json:"mac"`
	Interface string      `json:"interface"`
	State     TargetState `json:"state"`
	Since     time.Time   `json:"since"`
	// BufferCount, Firmware and ConfigString are from the target's
	// Query Config response.
	BufferCount  uint16 `json:"buffer_count"`
	Firmware     uint16 `json:"firmware"`
	ConfigString string `json:"config_string,omitempty"`
	// Window is the most frames it may have outstanding; Cwnd the part
	// in use after losses.
	Window          int `json:"window"`
	Cwnd            int `json:"cwnd"`
	SectorsPerFrame int `json:"sectors_per_frame"`
	Outstanding     int `json:"outstanding"`
	// RTT and RTTDev are the smoothed round-trip time and its deviation;
	// RTO is the retransmission timeout they give.
	RTT    time.Duration `json:"rtt"`
	RTTDev time.Duration `json:"rtt_dev"`
	RTO    time.Duration `json:"rto"`
	// Frames counts transmissions, Retransmits the repeated ones among
	// them, Spurious the retransmissions found needless (the copy before
	// was answered after all: slow, not lost; the window cut for it is
	// undone), Errors error answers and failed sends, Scorns the times it
	// was scorned.
	Frames      uint64    `json:"frames"`
	Retransmits uint64    `json:"retransmits"`
	Spurious    uint64    `json:"spurious_retransmits"`
	Errors      uint64    `json:"errors"`
	Scorns      uint64    `json:"scorns"`
	LastHeard   time.Time `json:"last_heard"`
	// Announces counts unsolicited Query Config responses from it.
	Announces uint64 `json:"announces"`
	// Strikes counts its scorns in a row without staying healthy for long
	// in between; from 2 on, a scorned target is held off: answers
	// readmit it only after HeldUntil (zero when not held off).
	Strikes     int       `json:"strikes"`
	HeldUntil   time.Time `json:"held_until"`
	LastScorned time.Time `json:"last_scorned"`
	// Dirty says it acknowledged writes not yet flushed.
	Dirty bool `json:"dirty"`
	// FailoversFrom counts the failovers that moved I/O away from it,
	// FailoversTo those after which I/O resumed on it; LastStall is how
	// long I/O stalled in the latest failover away from it (zero before
	// any). LateWrites counts its write copies answered after their fence
	// expired (see DeviceStats.LateWrites).
	FailoversFrom uint64        `json:"failovers_from"`
	FailoversTo   uint64        `json:"failovers_to"`
	LastStall     time.Duration `json:"last_stall"`
	LateWrites    uint64        `json:"late_writes"`
}

// Stats returns a snapshot of every device, sorted by shelf and slot.
func (i *Initiator) Stats() Stats {
	ds := i.Devices()
	sort.Slice(ds, func(a, b int) bool {
		return deviceKey(ds[a].shelf, ds[a].slot) < deviceKey(ds[b].shelf, ds[b].slot)
	})
	cfg := &i.cfg
	s := Stats{
		Config: ConfigStats{
			ScornTimeout: cfg.ScornTimeout, RTOMin: cfg.RTOMin, RTOMax: cfg.RTOMax, DiscoverInterval: cfg.DiscoverInterval,
			DeadTimeout: cfg.DeadTimeout, MaxWindow: cfg.MaxWindow, Policy: cfg.Policy,
		},
		Devices: make([]DeviceStats, 0, len(ds)),
	}
	if s.Config.Policy == "" {
		s.Config.Policy = PolicyFailover
	}
	for _, d := range ds {
		s.Devices = append(s.Devices, d.Stats())
	}
	return s
}

// Stats returns a snapshot of the device.
func (d *Device) Stats() DeviceStats {
	i := d.ini
	d.mu.Lock()
	defer d.mu.Unlock()
	e, fo := &d.engine, &d.failover
	c := &e.counters
	s := DeviceStats{
		Name: d.name, Shelf: d.shelf, Slot: d.slot, State: d.state, Since: i.wallTime(d.since),
		Size: int64(d.id.sectors) * 512, Model: d.id.model, Serial: d.id.serial, Firmware: d.id.firmware,
		LBA48: d.id.lba48, FUA: d.id.fua, Policy: fo.policyName, Active: []string{}, Queued: e.queued(), Lingering: e.lingering,
		Reads: c.reads, Writes: c.writes, Flushes: c.flushes, BytesRead: c.bytesRead, BytesWritten: c.bytesWritten,
		IOErrors: c.ioErrors, Stale: c.stale, Duplicate: c.duplicates, WrongSource: c.wrongSource, Fenced: c.fenced,
		LateWrites: c.lateWrites, Failovers: fo.failovers, LastStall: fo.lastStall,
		Targets: make([]TargetStats, 0, len(fo.targets)), Events: d.events.events(i),
		Latency: make([]LatencyHistogram, numTimedOps),
	}
	for op := range numTimedOps {
		s.Latency[op] = c.latency[op].snapshot(op)
	}
	now := i.now()
	for _, t := range fo.targets {
		if t.state == TargetActive {
			s.Active = append(s.Active, t.mac.String())
		}
		s.Targets = append(s.Targets, t.stats(i, now, fo.rto(t)))
	}
	return s
}

// stats describes the target; rto is the timeout a new frame to it gets.
func (t *target) stats(i *Initiator, now, rto time.Duration) TargetStats {
	var held time.Time
	if t.state == TargetScorned && t.holdUntil > now {
		held = i.wallTime(t.holdUntil)
	}
	return TargetStats{
		MAC: t.mac.String(), Interface: t.link.name, State: t.state, Since: i.wallTime(t.since),
		BufferCount: t.bufferCount, Firmware: t.firmware, ConfigString: t.configString,
		Window: t.window, Cwnd: t.cwnd, SectorsPerFrame: t.maxSectors, Outstanding: t.outstanding,
		RTT: t.rtt.Smoothed(), RTTDev: t.rtt.Deviation(), RTO: rto,
		Frames: t.framesSent, Retransmits: t.retransmits, Spurious: t.spurious, Errors: t.errors, Scorns: t.scorns,
		LastHeard: i.wallTime(t.lastHeard), Dirty: t.dirty,
		Announces: t.announces, Strikes: t.strikes, HeldUntil: held, LastScorned: i.wallTime(t.scornedAt),
		FailoversFrom: t.failoversFrom, FailoversTo: t.failoversTo, LastStall: t.lastStall, LateWrites: t.lateWrites,
	}
}
