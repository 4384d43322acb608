package main

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

// TestPrintAttached checks what attach prints once the device is usable:
// the path alone, or with --json one object whose keys scripts rely on.
func TestPrintAttached(t *testing.T) {
	r := attachResult{
		Device: "e1.2", Shelf: 1, Slot: 2, Path: "/dev/nbd3", Index: 3, Backend: backendID("e1.2"),
		Size: 1 << 30, BlockSize: 4096, Connections: 2, PID: 1234,
		Control: "/run/ironaoe/1234.sock", Metrics: "http://127.0.0.1:9193/metrics",
	}
	var plain bytes.Buffer
	if err := printAttached(&plain, attachOptions{}, r); err != nil {
		t.Fatal(err)
	}
	if got := plain.String(); got != "/dev/nbd3\n" {
		t.Errorf("plain output %q, want the path alone", got)
	}

	var out bytes.Buffer
	if err := printAttached(&out, attachOptions{JSON: true}, r); err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("attach --json: %v\n%s", err, out.String())
	}
	if dec.More() {
		t.Errorf("attach --json printed more than one JSON value")
	}
	want := map[string]any{
		"device": "e1.2", "shelf": 1.0, "slot": 2.0, "path": "/dev/nbd3", "index": 3.0, "backend": "ironaoe:e1.2",
		"size": float64(1 << 30), "block_size": 4096.0, "connections": 2.0, "pid": 1234.0,
		"control": "/run/ironaoe/1234.sock", "metrics": "http://127.0.0.1:9193/metrics",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("attach --json = %v\nwant %v", got, want)
	}

	// Without a control socket or metrics, those keys are left out.
	r.Control, r.Metrics = "", ""
	out.Reset()
	if err := printAttached(&out, attachOptions{JSON: true}, r); err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"control", "metrics"} {
		if _, ok := got[k]; ok {
			t.Errorf("attach --json has %q without one: %s", k, out.String())
		}
	}
}
