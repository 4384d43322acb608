package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// nbdCells builds the cells of one MTU, target and operation: raw figures
// by queue depth, one per round, then the NBD ones (0 for a failed pass).
func nbdCells(op string, raw map[int][]float64, viaNBD []float64) []NBDCell {
	var cells []NBDCell
	for qd, figs := range raw {
		for run, mbps := range figs {
			c := NBDCell{Target: "ironblade", MTU: 9000, Run: run, Op: op, Path: PathRaw, QueueDepth: qd, MBps: mbps}
			if mbps == 0 {
				c.Error = "no response"
			}
			cells = append(cells, c)
		}
	}
	for run, mbps := range viaNBD {
		c := NBDCell{Target: "ironblade", MTU: 9000, Run: run, Op: op, Path: PathNBD, MBps: mbps}
		if mbps == 0 {
			c.Error = "nbdcopy failed"
		}
		cells = append(cells, c)
	}
	return cells
}

func TestNBDRows(t *testing.T) {
	for _, c := range []struct {
		name                string
		raw                 map[int][]float64
		viaNBD              []float64
		wantRaw, wantNBD    float64
		wantQD, runs, fails int
		wantRatio           float64
		meets               bool
	}{
		{name: "one round", raw: map[int][]float64{16: {400}, 64: {500}}, viaNBD: []float64{400},
			wantRaw: 500, wantQD: 64, wantNBD: 400, runs: 1, wantRatio: 0.8, meets: true},
		{name: "medians, not best runs", raw: map[int][]float64{16: {300, 900, 310}, 64: {500, 510, 100}},
			viaNBD: []float64{200, 340, 1000}, wantRaw: 500, wantQD: 64, wantNBD: 340, runs: 3, wantRatio: 0.68},
		{name: "even count", raw: map[int][]float64{16: {100, 200}}, viaNBD: []float64{100, 50},
			wantRaw: 150, wantQD: 16, wantNBD: 75, runs: 2, wantRatio: 0.5},
		{name: "failed passes left out", raw: map[int][]float64{16: {0, 200}, 64: {0, 0}}, viaNBD: []float64{0, 140},
			wantRaw: 200, wantQD: 16, wantNBD: 140, runs: 1, fails: 1, wantRatio: 0.7, meets: true},
		{name: "no raw figure", raw: map[int][]float64{16: {0}}, viaNBD: []float64{140}, wantNBD: 140, runs: 1},
		{name: "no NBD figure", raw: map[int][]float64{16: {100}}, viaNBD: []float64{0}, wantRaw: 100, wantQD: 16, fails: 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			rep := &NBDReport{Cells: nbdCells("read", c.raw, c.viaNBD)}
			rows := rep.Rows()
			if len(rows) != 1 {
				t.Fatalf("%d rows, want 1: %+v", len(rows), rows)
			}
			r := rows[0]
			if r.RawMBps != c.wantRaw || r.RawQueueDepth != c.wantQD || r.NBDMBps != c.wantNBD ||
				r.Runs != c.runs || r.Failed != c.fails {
				t.Errorf("row %+v; want raw %v at QD %d, NBD %v, %d runs, %d failed", r, c.wantRaw, c.wantQD, c.wantNBD, c.runs, c.fails)
			}
			if d := r.Ratio - c.wantRatio; d > 1e-9 || d < -1e-9 {
				t.Errorf("ratio %v, want %v", r.Ratio, c.wantRatio)
			}
			if r.MeetsAim() != c.meets {
				t.Errorf("MeetsAim() = %v at ratio %v, want %v", r.MeetsAim(), r.Ratio, c.meets)
			}
		})
	}
}

func TestNBDRowsOrder(t *testing.T) {
	var cells []NBDCell
	for _, mtu := range []int{1500, 9000} {
		for _, target := range []string{"ironblade", "vblade"} {
			for _, op := range []string{"write", "read"} {
				for _, path := range []string{PathRaw, PathNBD} {
					cells = append(cells, NBDCell{Target: target, MTU: mtu, Op: op, Path: path, QueueDepth: 16, MBps: 10})
				}
			}
		}
	}
	rows := (&NBDReport{Cells: cells}).Rows()
	if len(rows) != 8 {
		t.Fatalf("%d rows, want 8", len(rows))
	}
	for i, want := range []string{"1500 ironblade write", "1500 ironblade read", "1500 vblade write", "1500 vblade read",
		"9000 ironblade write"} {
		r := rows[i]
		if got := fmt.Sprint(r.MTU, " ", r.Target, " ", r.Op); got != want || r.Ratio != 1 {
			t.Errorf("row %d: %s ratio %v; want %s ratio 1", i, got, r.Ratio, want)
		}
	}
}

func TestNBDMarkdown(t *testing.T) {
	rep := &NBDReport{Size: 256 << 20, Repeat: 1, Dir: "/var/tmp", FileSystem: "ext4", SourceDir: "/dev/shm", Cache: "cold",
		Ironaoe: "ironaoe v1", Nbdcopy: "nbdcopy 1.14.2", CPUs: 2}
	rep.Cells = append(rep.Cells, nbdCells("write", map[int][]float64{16: {100}, 64: {80}}, []float64{60})...)
	rep.Cells = append(rep.Cells, nbdCells("read", map[int][]float64{16: {300}, 64: {400}}, []float64{320})...)
	rep.Cells = append(rep.Cells, NBDCell{Target: "vblade", MTU: 1500, Op: "read", Path: PathRaw, QueueDepth: 16,
		Error: "bench: no answer from e1.0"})
	var b bytes.Buffer
	if err := rep.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| 9000 | ironblade | write | 100.0 | 16 | 60.0 | 60% (below 70%) |",
		"| 9000 | ironblade | read | 400.0 | 64 | 320.0 | 80% |",
		"| 1500 | vblade | read | failed | | failed | n/a |",
		"Failures:", "no answer from e1.0",
		"page cache dropped (cold)", "256 MiB", "1 round(s)",
		"| 9000 | ironblade | 1 | read | raw | 64 |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	rep.Cache = "warm"
	b.Reset()
	_ = rep.WriteMarkdown(&b)
	if !strings.Contains(b.String(), "Caches kept (warm)") {
		t.Errorf("warm report does not say so:\n%s", b.String())
	}

	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var back struct {
		NBDReport
		Rows []NBDRow `json:"rows"`
	}
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatalf("JSON does not decode: %v\n%s", err, b.String())
	}
	if len(back.Cells) != len(rep.Cells) || len(back.Rows) != 3 || back.Rows[1].Ratio != 0.8 {
		t.Errorf("JSON round trip: %d cells, rows %+v", len(back.Cells), back.Rows)
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{3, 1}, 2}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestStream(t *testing.T) {
	for _, c := range []struct {
		name      string
		mtu, loss int
		op        Op
		qd        int
		bytes     int64
		want      int64
		flush     bool
	}{
		{name: "write whole device", mtu: 9000, op: Write, qd: 16, want: 2048 * 512, flush: true},
		{name: "read whole device", mtu: 9000, op: Read, qd: 64, want: 2048 * 512},
		{name: "part, odd tail", mtu: 1500, op: Read, qd: 4, bytes: 5*512 + 100, want: 5 * 512},
		{name: "write with loss", mtu: 1500, loss: 5, op: Write, qd: 16, bytes: 256 << 10, want: 256 << 10, flush: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			link := serveOnHub(t, 2048, c.mtu, c.loss)
			d := findTarget(t, link)
			res, err := Stream(context.Background(), link, d, StreamOptions{Op: c.op, QueueDepth: c.qd, Bytes: c.bytes, Flush: c.flush})
			if err != nil {
				t.Fatal(err)
			}
			if res.Bytes != c.want || res.Elapsed <= 0 || res.MBps() <= 0 {
				t.Errorf("moved %d bytes in %v (%.1f MB/s), want %d bytes", res.Bytes, res.Elapsed, res.MBps(), c.want)
			}
			if c.flush != (res.FlushTime > 0) {
				t.Errorf("flush time %v with Flush %v", res.FlushTime, c.flush)
			}
			if c.loss > 0 && res.Retransmits == 0 {
				t.Errorf("%d%% loss but no retransmissions", c.loss)
			}
		})
	}
}

func TestStreamRejects(t *testing.T) {
	link := serveOnHub(t, 64, 1500, 0)
	d := findTarget(t, link)
	for _, o := range []StreamOptions{{QueueDepth: 0}, {QueueDepth: 1, Bytes: -1}, {QueueDepth: 1, Bytes: 100},
		{QueueDepth: MaxQueueDepth + 1}} {
		if _, err := Stream(context.Background(), link, d, o); err == nil {
			t.Errorf("Stream(%+v) succeeded, want an error", o)
		}
	}
	// Nobody answers for this device: the flush gives up with the context.
	ghost := d
	ghost.MAC[5] ^= 0xff
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := flushCache(ctx, link, ghost); err == nil {
		t.Error("flush of a device nobody answers for succeeded")
	}
}

func TestParseProcStat(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"8767 (head) R 8687 8687 19719 0 -1 4194304 105 0 1 0 7 3 0 0 20 0 1 0 498495", 100 * time.Millisecond, true},
		{"1 (a b) c)) S 0 0 0 0 -1 0 0 0 0 0 250 50 0 0", 3 * time.Second, true},
		{"8767 head R 8687", 0, false},
		{"8767 (head) R 8687 8687", 0, false},
		{"8767 (head) R 8687 8687 19719 0 -1 4194304 105 0 1 0 x 3", 0, false},
		{"8767 (head) R 8687 8687 19719 0 -1 4194304 105 0 1 0 -7 3", 0, false},
	} {
		got, err := parseProcStat(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseProcStat(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	if _, err := processCPU(os.Getpid()); err != nil {
		t.Errorf("processCPU(self): %v", err)
	}
	// Burn a little CPU: the meter must see it.
	m := meterSelf()
	deadline := time.Now().Add(30 * time.Millisecond)
	for n := 0; time.Now().Before(deadline); n++ {
		_ = n * n
	}
	if m.seconds() <= 0 {
		t.Error("meterSelf saw no CPU time")
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("8767 (head) R 8687 8687 19719 0 -1 4194304 105 0 1 0 7 3 0 0 20 0 1 0 498495")
	f.Add("1 (a b) c)) S 0 0 0 0 -1 0 0 0 0 0 250 50 0 0")
	f.Add(")")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseProcStat(s)
		if err == nil && d < 0 {
			t.Errorf("parseProcStat(%q) = %v: negative", s, d)
		}
	})
}

func TestParseSchedstat(t *testing.T) {
	for _, c := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1089620 0 2\n", 1089620 * time.Nanosecond, true},
		{"0 5 7", 0, true},
		{"1 2", 0, false},
		{"x 0 2", 0, false},
		{"-5 0 2", 0, false},
		{"", 0, false},
	} {
		got, err := parseSchedstat(c.in)
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseSchedstat(%q) = %v, %v; want %v, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
	// Burn CPU until the process meter sees 10 ms of it: on a loaded
	// machine wall time is not CPU time, so the burn is bounded by 2 s of
	// wall time rather than fixed.
	m := meterProcess(os.Getpid())
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && m.seconds() < 0.01 {
		spin := time.Now().Add(5 * time.Millisecond)
		for n := 0; time.Now().Before(spin); n++ {
			_ = n * n
		}
	}
	if s := m.seconds(); s < 0.01 {
		t.Errorf("meterProcess(self) saw %.3f s of CPU after burning for 2 s", s)
	}
}

func FuzzParseSchedstat(f *testing.F) {
	f.Add("1089620 0 2\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseSchedstat(s)
		if err == nil && d < 0 {
			t.Errorf("parseSchedstat(%q) = %v: negative", s, d)
		}
	})
}

func TestParseRetransmits(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{`{"processes":[{"pid":1,"stats":{"devices":[{"targets":[{"retransmits":3},{"retransmits":4}]},` +
			`{"targets":[{"retransmits":5}]}]}}]}`, 12, true},
		{`{"processes":[{"stats":{"devices":[]}}]}`, 0, true},
		{`{"processes":[]}`, 0, false},
		{`{"processes":[{"stats":{"devices":[{"targets":[{"retransmits":-1}]}]}}]}`, 0, false},
		{`not json`, 0, false},
	} {
		got, err := parseRetransmits([]byte(c.in))
		if (err == nil) != c.ok || got != c.want {
			t.Errorf("parseRetransmits(%s) = %d, %v; want %d, ok %v", c.in, got, err, c.want, c.ok)
		}
	}
}

func FuzzParseRetransmits(f *testing.F) {
	f.Add([]byte(`{"processes":[{"stats":{"devices":[{"targets":[{"retransmits":3}]}]}}]}`))
	f.Add([]byte(`{"processes":[]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parseRetransmits(b) // must not panic
	})
}
