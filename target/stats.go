package target

import (
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// dropReason says why a frame was ignored; its name is the Stats.Dropped key.
type dropReason int

const (
	dropShort dropReason = iota
	dropNotAoE
	dropResponse
	dropOtherHost
	dropOtherTarget
	dropBadSource
	dropMACMask
	dropWildcardWrite
	dropConfigMismatch
	dropShutdown
	numDropReasons
)

var dropNames = [numDropReasons]string{
	dropShort:          "short",
	dropNotAoE:         "not_aoe",
	dropResponse:       "response",
	dropOtherHost:      "other_host",
	dropOtherTarget:    "other_target",
	dropBadSource:      "bad_source",
	dropMACMask:        "mac_mask",
	dropWildcardWrite:  "wildcard_write",
	dropConfigMismatch: "config_mismatch",
	dropShutdown:       "shutdown",
}

// errorKind classifies an error response; its name is the Stats.Errors key.
type errorKind int

const (
	errUnrecognizedCommand errorKind = iota
	errBadArgument
	errConfigStringPresent
	errUnsupportedVersion
	errTargetReserved
	errATAAbort
	errATAReadOnly
	errATAIDNF
	errATARead
	errATAWrite
	errATASync
	errMaskBadDirective
	errMaskListFull
	numErrorKinds
)

var errorNames = [numErrorKinds]string{
	errUnrecognizedCommand: "aoe_unrecognized_command",
	errBadArgument:         "aoe_bad_argument",
	errConfigStringPresent: "aoe_config_string_present",
	errUnsupportedVersion:  "aoe_unsupported_version",
	errTargetReserved:      "aoe_target_reserved",
	errATAAbort:            "ata_abort",
	errATAReadOnly:         "ata_read_only",
	errATAIDNF:             "ata_idnf",
	errATARead:             "ata_read_error",
	errATAWrite:            "ata_write_error",
	errATASync:             "ata_sync_error",
	errMaskBadDirective:    "mask_bad_directive",
	errMaskListFull:        "mask_list_full",
}

// counters are the live, lock-free form of Stats.
type counters struct {
	framesIn, framesOut     atomic.Uint64
	bytesRead, bytesWritten atomic.Uint64
	syncs, syncedWrites     atomic.Uint64
	sendErrors              atomic.Uint64
	dropped                 [numDropReasons]atomic.Uint64
	errors                  [numErrorKinds]atomic.Uint64

	// requestDuration is per op, from the read of a request's frame to
	// its response handed to the link, in nanoseconds.
	requestDuration [numTimedOps]histogram
	// syncDuration times each group commit's Backend.Sync, in
	// nanoseconds; syncBatch counts the requests each answered.
	syncDuration, syncBatch histogram
	// inFlight counts the requests read and not yet answered or dropped.
	inFlight atomic.Int64
}

// Stats returns a snapshot of the target's counters.
func (s *Server) Stats() Stats {
	c := &s.counters
	st := Stats{
		FramesIn:     c.framesIn.Load(),
		FramesOut:    c.framesOut.Load(),
		BytesRead:    c.bytesRead.Load(),
		BytesWritten: c.bytesWritten.Load(),
		Syncs:        c.syncs.Load(),
		SyncedWrites: c.syncedWrites.Load(),
		SendErrors:   c.sendErrors.Load(),
		Dropped:      make(map[string]uint64),
		Errors:       make(map[string]uint64),
	}
	for i := range c.dropped {
		if n := c.dropped[i].Load(); n > 0 {
			st.Dropped[dropNames[i]] = n
		}
	}
	for i := range c.errors {
		if n := c.errors[i].Load(); n > 0 {
			st.Errors[errorNames[i]] = n
		}
	}
	return st
}

// Collector returns a Prometheus collector that exports the Stats as
// ironblade_target_* counters, with the request and sync duration
// histograms and the requests in flight, each labelled with the target's
// shelf and slot, so the collectors of several targets can share a
// registry.
func (s *Server) Collector() prometheus.Collector {
	labels := prometheus.Labels{
		"shelf": strconv.Itoa(int(s.cfg.Shelf)),
		"slot":  strconv.Itoa(int(s.cfg.Slot)),
	}
	desc := func(name, help string, variable ...string) *prometheus.Desc {
		return prometheus.NewDesc("ironblade_target_"+name, help, variable, labels)
	}
	return &collector{
		s:            s,
		framesIn:     desc("frames_received_total", "AoE frames read from the link."),
		framesOut:    desc("frames_sent_total", "AoE frames sent on the link."),
		bytesRead:    desc("read_bytes_total", "Bytes read from the backend for ATA reads."),
		bytesWritten: desc("written_bytes_total", "Bytes written to the backend by ATA writes."),
		syncs:        desc("syncs_total", "Backend syncs (fdatasync) run, and lone writes made durable in one call."),
		syncedWrites: desc("synced_writes_total", "Writes acknowledged only once durable."),
		sendErrors:   desc("send_errors_total", "Responses the link failed to send."),
		dropped:      desc("frames_dropped_total", "Frames ignored, by reason.", "reason"),
		errors:       desc("errors_total", "Error responses, by kind.", "kind"),
		requestDuration: desc("request_duration_seconds",
			"Time from reading a request's frame to handing its response to the link, by op.", "op"),
		syncDuration: desc("sync_duration_seconds", "Duration of each group commit's sync (fdatasync)."),
		syncBatch:    desc("sync_batch", "Requests (writes and flushes) answered by each group commit's sync."),
		inFlight:     desc("requests_in_flight", "Requests read and not yet answered: at workers, waiting for a sync, or in the receive loop."),
	}
}

type collector struct {
	s                                                   *Server
	framesIn, framesOut, bytesRead, bytesWritten, syncs *prometheus.Desc
	syncedWrites, sendErrors, dropped, errors           *prometheus.Desc
	requestDuration, syncDuration, syncBatch, inFlight  *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.framesIn, c.framesOut, c.bytesRead, c.bytesWritten,
		c.syncs, c.syncedWrites, c.sendErrors, c.dropped, c.errors,
		c.requestDuration, c.syncDuration, c.syncBatch, c.inFlight} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	n := &c.s.counters
	counter := func(d *prometheus.Desc, v uint64, label ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), label...)
	}
	counter(c.framesIn, n.framesIn.Load())
	counter(c.framesOut, n.framesOut.Load())
	counter(c.bytesRead, n.bytesRead.Load())
	counter(c.bytesWritten, n.bytesWritten.Load())
	counter(c.syncs, n.syncs.Load())
	counter(c.syncedWrites, n.syncedWrites.Load())
	counter(c.sendErrors, n.sendErrors.Load())
	// Every reason and kind is exported, zeros included, so that series
	// exist before the first event and rate() works from the start.
	for i := range n.dropped {
		counter(c.dropped, n.dropped[i].Load(), dropNames[i])
	}
	for i := range n.errors {
		counter(c.errors, n.errors[i].Load(), errorNames[i])
	}
	for op := range n.requestDuration {
		ch <- n.requestDuration[op].metric(c.requestDuration, durationBounds[:], 1e-9, timedOpNames[op])
	}
	ch <- n.syncDuration.metric(c.syncDuration, durationBounds[:], 1e-9)
	ch <- n.syncBatch.metric(c.syncBatch, batchBounds[:], 1)
	ch <- prometheus.MustNewConstMetric(c.inFlight, prometheus.GaugeValue, float64(n.inFlight.Load()))
}

// limitedLog logs at most one message per key and interval, and says how
// many it held back: a failing disk or link must not flood the log.
type limitedLog struct {
	log      *slog.Logger
	interval time.Duration

	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

func newLimitedLog(log *slog.Logger, interval time.Duration) *limitedLog {
	return &limitedLog{log: log, interval: interval, last: make(map[string]time.Time), held: make(map[string]int)}
}

// Error logs msg at error level unless a message with the same key was
// logged less than an interval ago.
func (l *limitedLog) Error(key, msg string, args ...any) {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.last[key]) < l.interval {
		l.held[key]++
		l.mu.Unlock()
		return
	}
	held := l.held[key]
	l.last[key] = now
	l.held[key] = 0
	l.mu.Unlock()
	if held > 0 {
		args = append(args, "suppressed", held)
	}
	l.log.Error(msg, args...)
}
