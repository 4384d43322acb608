package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ironblade/ironblade/initiator"
)

// This file holds the failover demo's timeline: a series of snapshots of
// one device as `ironaoe stat --json` reports it, taken at a fixed
// interval while files are copied onto the device and its target is
// migrated or fenced. demo_report.go turns a timeline into stall and
// throughput figures, package bench/demoplot into a plot.

// TimelineSample is one snapshot of a device of a running ironaoe serve or
// attach process: the figures of its initiator.DeviceStats that a
// timeline follows, stamped with the time and the process.
type TimelineSample struct {
	// Time is when the snapshot was taken (the middle of the query).
	Time time.Time `json:"time"`
	// PID is the ironaoe process that answered; counters restart when it
	// changes.
	PID          int                   `json:"pid"`
	Device       string                `json:"device"`
	State        initiator.DeviceState `json:"state"`
	BytesWritten uint64                `json:"bytes_written"`
	BytesRead    uint64                `json:"bytes_read"`
	Writes       uint64                `json:"writes"`
	Reads        uint64                `json:"reads"`
	Flushes      uint64                `json:"flushes"`
	IOErrors     uint64                `json:"io_errors"`
	// LateWrites counts writes a target executed after the fence that
	// guarded them expired; it should stay 0.
	LateWrites uint64 `json:"late_writes"`
	// Active lists the MACs of the targets carrying new I/O.
	Active  []string         `json:"active"`
	Targets []TimelineTarget `json:"targets"`
	// Events are the device's failover events first seen in this sample.
	Events []initiator.Event `json:"events,omitempty"`
}

// TimelineTarget is what a timeline keeps of one target of the device (of
// its initiator.TargetStats): enough to follow I/O moving between targets,
// without the rest of its figures in every sample.
type TimelineTarget struct {
	MAC         string                `json:"mac"`
	State       initiator.TargetState `json:"state"`
	Frames      uint64                `json:"frames"`
	Retransmits uint64                `json:"retransmits"`
	Outstanding int                   `json:"outstanding"`
}

// errNoDevice is returned by ParseStatSample when no process reports the
// device.
var errNoDevice = errors.New("no ironaoe process reports the device")

// ParseStatSample reads the output of `ironaoe stat --json` and returns
// the named device of the first process that reports it, with all of its
// logged events, stamped with at.
func ParseStatSample(data []byte, device string, at time.Time) (TimelineSample, error) {
	doc, err := parseStat(data)
	if err != nil {
		return TimelineSample{}, fmt.Errorf("timeline: %w", err)
	}
	for _, p := range doc.Processes {
		for _, d := range p.Stats.Devices {
			if d.Name == device {
				return newTimelineSample(at, p.PID, &d), nil
			}
		}
	}
	return TimelineSample{}, fmt.Errorf("timeline: %s: %w", device, errNoDevice)
}

// newTimelineSample takes a timeline's figures of d, reported by process
// pid at time at.
func newTimelineSample(at time.Time, pid int, d *initiator.DeviceStats) TimelineSample {
	s := TimelineSample{
		Time: at, PID: pid, Device: d.Name, State: d.State,
		BytesWritten: d.BytesWritten, BytesRead: d.BytesRead, Writes: d.Writes, Reads: d.Reads,
		Flushes: d.Flushes, IOErrors: d.IOErrors, LateWrites: d.LateWrites,
		Active: d.Active, Events: d.Events,
	}
	if d.Targets != nil {
		s.Targets = make([]TimelineTarget, len(d.Targets))
	}
	for i, t := range d.Targets {
		s.Targets[i] = TimelineTarget{MAC: t.MAC, State: t.State, Frames: t.Frames, Retransmits: t.Retransmits, Outstanding: t.Outstanding}
	}
	return s
}

// TimelineConfig configures SampleTimeline.
type TimelineConfig struct {
	// Query returns the output of `ironaoe stat --json`.
	Query func(ctx context.Context) ([]byte, error)
	// Device is the device to follow, such as "e1.0".
	Device string
	// Interval is the time between samples; 0 means 100 ms.
	Interval time.Duration
	// Out receives one JSON object (a TimelineSample) per line.
	Out io.Writer
	// OnSample, if set, sees each sample once it is written.
	OnSample func(TimelineSample)
	// OnError, if set, hears of each failed query (the process may not
	// be up yet, or be restarting); sampling goes on.
	OnError func(error)
}

// SampleTimeline queries the device every Interval until ctx is done and
// writes each sample to Out as a line of JSON. Each event of the device's
// failover log is written once, with the first sample that shows it. It
// returns nil when ctx ends and an error only if Out fails.
func SampleTimeline(ctx context.Context, cfg TimelineConfig) error {
	interval := cfg.Interval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	enc := json.NewEncoder(cfg.Out)
	seen := make(map[eventKey]bool)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if err := takeSample(ctx, cfg, enc, seen); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// takeSample queries once and writes the sample, keeping in seen the
// events already written.
func takeSample(ctx context.Context, cfg TimelineConfig, enc *json.Encoder, seen map[eventKey]bool) error {
	start := time.Now()
	out, err := cfg.Query(ctx)
	end := time.Now()
	if err == nil {
		var s TimelineSample
		s, err = ParseStatSample(out, cfg.Device, start.Add(end.Sub(start)/2))
		if err == nil {
			fresh := s.Events[:0]
			for _, e := range s.Events {
				if k := keyOf(e); !seen[k] {
					seen[k] = true
					fresh = append(fresh, e)
				}
			}
			s.Events = fresh
			if err := enc.Encode(s); err != nil {
				return fmt.Errorf("timeline: write sample: %w", err)
			}
			if cfg.OnSample != nil {
				cfg.OnSample(s)
			}
			return nil
		}
	}
	if cfg.OnError != nil && ctx.Err() == nil {
		cfg.OnError(err)
	}
	return nil
}

// eventKey identifies an event across samples; time.Time itself is no
// good map key, since equal instants may differ in location.
type eventKey struct {
	at                       int64
	kind                     initiator.EventKind
	target, previous, detail string
}

func keyOf(e initiator.Event) eventKey {
	return eventKey{e.Time.UnixNano(), e.Kind, e.Target, e.Previous, e.Detail}
}

// ReadTimeline reads the samples SampleTimeline wrote.
func ReadTimeline(r io.Reader) ([]TimelineSample, error) {
	dec := json.NewDecoder(r)
	var samples []TimelineSample
	for {
		var s TimelineSample
		err := dec.Decode(&s)
		if errors.Is(err, io.EOF) {
			return samples, nil
		}
		if err != nil {
			// A sampler killed mid-line leaves a truncated last line:
			// keep what came before it.
			if errors.Is(err, io.ErrUnexpectedEOF) && len(samples) > 0 {
				return samples, nil
			}
			return samples, fmt.Errorf("timeline: read sample %d: %w", len(samples)+1, err)
		}
		samples = append(samples, s)
	}
}
