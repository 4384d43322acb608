package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/initiator"
)

// discovery is what discover prints with --json.
type discovery struct {
	Interfaces []string           `json:"interfaces"`
	Devices    []discoveredDevice `json:"devices"`
}

// discoveredDevice is one device that answered.
type discoveredDevice struct {
	Name  string `json:"name"`
	Shelf uint16 `json:"shelf"`
	Slot  uint8  `json:"slot"`
	// Size is the capacity in bytes from IDENTIFY; 0 if the device did not
	// answer IDENTIFY in time.
	Size     int64              `json:"size"`
	Model    string             `json:"model,omitempty"`
	Serial   string             `json:"serial,omitempty"`
	Firmware string             `json:"firmware,omitempty"`
	Targets  []discoveredTarget `json:"targets"`
}

// discoveredTarget is one MAC through which a device answered, with what
// its Query Config response said.
type discoveredTarget struct {
	MAC             string `json:"mac"`
	Interface       string `json:"interface"`
	BufferCount     uint16 `json:"buffer_count"`
	SectorsPerFrame int    `json:"sectors_per_frame"`
	Firmware        uint16 `json:"firmware"`
	ConfigString    string `json:"config_string"`
	// Auth is, with --auth-key, "proven" for a target that proved the
	// key, else why it did not; empty without a key.
	Auth string `json:"auth,omitempty"`
}

// discover broadcasts Query Config, waits o.Wait for answers and for the
// devices found to answer IDENTIFY, and prints them.
func discover(ctx context.Context, o discoverOptions, env *environment) error {
	// Broadcast a few times while listening, in case a query or an
	// answer is lost.
	o.Engine.Config.DiscoverInterval = min(o.Engine.Config.DiscoverInterval, max(o.Wait/4, 100*time.Millisecond))
	eng, err := startEngine(ctx, o.Engine, env)
	if err != nil {
		return err
	}
	defer eng.stop()
	// Run broadcasts Query Config as it starts and then every
	// DiscoverInterval; listen for the answers. (Initiator.Discover would
	// broadcast too, but fails if called before Run has got going, which
	// the caller cannot observe.)
	select {
	case <-ctx.Done():
	case <-time.After(o.Wait):
	}
	// Devices that answered late get as long again to be identified.
	idCtx, cancel := context.WithTimeout(ctx, max(o.Wait, time.Second))
	defer cancel()
	for _, d := range eng.ini.Devices() {
		if _, err := eng.ini.Device(idCtx, d.Shelf(), d.Slot()); err != nil {
			env.Logger.Warn("device not identified in time; its size is unknown", "device", d.Name(), "err", err)
		}
	}
	result := discoveryFrom(eng.ini.Stats(), eng.interfaces)
	addAuth(&result, eng.authStats())
	if len(result.Devices) == 0 {
		env.Logger.Warn("no AoE device answered", "interfaces", strings.Join(eng.interfaces, ","), "waited", o.Wait)
	}
	if o.JSON {
		return writeJSON(env.Stdout, result)
	}
	return formatDiscovery(env.Stdout, result)
}

// discoveryFrom picks what discover reports out of the initiator's stats.
func discoveryFrom(st initiator.Stats, interfaces []string) discovery {
	r := discovery{Interfaces: interfaces, Devices: []discoveredDevice{}}
	for _, d := range st.Devices {
		dd := discoveredDevice{
			Name: d.Name, Shelf: d.Shelf, Slot: d.Slot, Size: d.Size,
			Model: d.Model, Serial: d.Serial, Firmware: d.Firmware, Targets: []discoveredTarget{},
		}
		for _, t := range d.Targets {
			dd.Targets = append(dd.Targets, discoveredTarget{
				MAC: t.MAC, Interface: t.Interface, BufferCount: t.BufferCount,
				SectorsPerFrame: t.SectorsPerFrame, Firmware: t.Firmware, ConfigString: t.ConfigString,
			})
		}
		r.Devices = append(r.Devices, dd)
	}
	return r
}

// formatDiscovery prints one line per target of every device.
func formatDiscovery(w io.Writer, r discovery) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	auth := false
	for _, d := range r.Devices {
		for _, t := range d.Targets {
			auth = auth || t.Auth != ""
		}
	}
	header := "DEVICE\tTARGET\tINTERFACE\tBUFFERS\tSECTORS/FRAME\tFIRMWARE\tCAPACITY\tCONFIG"
	if auth {
		header += "\tAUTH"
	}
	fmt.Fprintln(tw, header)
	for _, d := range r.Devices {
		capacity := "unknown"
		if d.Size > 0 {
			capacity = formatBytes(d.Size)
		}
		for _, t := range d.Targets {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%#04x\t%s\t%s", d.Name, t.MAC, t.Interface,
				t.BufferCount, t.SectorsPerFrame, t.Firmware, capacity, quoteConfig(t.ConfigString))
			if auth {
				fmt.Fprintf(tw, "\t%s", orDash(t.Auth))
			}
			fmt.Fprintln(tw)
		}
	}
	return tw.Flush()
}

// quoteConfig shows a config string, "-" when empty; it may hold any bytes.
func quoteConfig(s string) string {
	if s == "" {
		return "-"
	}
	return strconv.Quote(s)
}

// formatBytes writes a size in binary units, with its exact byte count
// when that is not a whole number of units: "64 MiB", "1.5 GiB
// (1610612736 B)".
func formatBytes(n int64) string {
	s := humanBytes(n)
	if u := unitOf(n); u > 0 && n%(int64(1)<<(10*u)) != 0 {
		s += fmt.Sprintf(" (%d B)", n)
	}
	return s
}

// humanBytes writes a size in binary units to one decimal: "1.5 GiB".
func humanBytes(n int64) string {
	u := unitOf(n)
	if u == 0 {
		return fmt.Sprintf("%d B", n)
	}
	v := float64(n) / float64(int64(1)<<(10*u))
	return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + "KMGTPE"[u-1:u] + "iB"
}

// unitOf picks the binary unit to write n in: 0 for bytes, 1 for KiB, and
// so on up to 6 for EiB.
func unitOf(n int64) int {
	u := 0
	for u < 6 && n >= int64(1)<<(10*(u+1)) {
		u++
	}
	return u
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// addAuth marks the targets that proved the key and adds those that did
// not (the initiator never saw them), with why.
func addAuth(r *discovery, stats []seal.Stats) {
	for _, st := range stats {
		for _, p := range st.Peers {
			var d *discoveredDevice
			for i := range r.Devices {
				if r.Devices[i].Name == p.Device {
					d = &r.Devices[i]
				}
			}
			if d == nil {
				var shelf, slot int
				fmt.Sscanf(p.Device, "e%d.%d", &shelf, &slot)
				r.Devices = append(r.Devices, discoveredDevice{Name: p.Device, Shelf: uint16(shelf), Slot: uint8(slot), Targets: []discoveredTarget{}})
				d = &r.Devices[len(r.Devices)-1]
			}
			auth := "proven"
			if p.State != "established" {
				auth = "NOT PROVEN: " + p.State
				if p.LastError != "" {
					auth = "NOT PROVEN: " + p.LastError
				}
			}
			found := false
			for i := range d.Targets {
				if d.Targets[i].MAC == p.MAC {
					d.Targets[i].Auth, found = auth, true
				}
			}
			if !found {
				d.Targets = append(d.Targets, discoveredTarget{MAC: p.MAC, Auth: auth})
			}
		}
	}
}
