package main

import (
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

// authKeyArg is one --auth-key: a key file for every device, or for one
// (eS.L=FILE).
type authKeyArg struct {
	Device *seal.DeviceAddr
	File   string
}

var deviceKeyArg = regexp.MustCompile(`^e(\d+)\.(\d+)=(.*)$`)

// parseAuthKey reads one --auth-key value.
func parseAuthKey(v string) (authKeyArg, error) {
	m := deviceKeyArg.FindStringSubmatch(v)
	if m == nil {
		if v == "" {
			return authKeyArg{}, fmt.Errorf("--auth-key: empty file name")
		}
		return authKeyArg{File: v}, nil
	}
	shelf, err1 := strconv.ParseUint(m[1], 10, 16)
	slot, err2 := strconv.ParseUint(m[2], 10, 8)
	if err1 != nil || err2 != nil || shelf >= aoe.BroadcastMajor || slot >= aoe.BroadcastMinor {
		return authKeyArg{}, fmt.Errorf("--auth-key %q: want eSHELF.SLOT=FILE with shelf 0-65534 and slot 0-254", v)
	}
	if m[3] == "" {
		return authKeyArg{}, fmt.Errorf("--auth-key %q: no file after '='", v)
	}
	return authKeyArg{Device: &seal.DeviceAddr{Shelf: uint16(shelf), Slot: uint8(slot)}, File: m[3]}, nil
}

// parseAuthKeys reads every --auth-key value: at most one for every device
// and one per device.
func parseAuthKeys(values []string) ([]authKeyArg, error) {
	var args []authKeyArg
	seen := map[string]bool{}
	for _, v := range values {
		a, err := parseAuthKey(v)
		if err != nil {
			return nil, err
		}
		name := "every device"
		if a.Device != nil {
			name = a.Device.String()
		}
		if seen[name] {
			return nil, fmt.Errorf("--auth-key: two keys for %s", name)
		}
		seen[name] = true
		args = append(args, a)
	}
	return args, nil
}

// loadAuthConfig reads the key files into the sealing layer's configuration.
func loadAuthConfig(args []authKeyArg) (seal.InitiatorConfig, error) {
	cfg := seal.InitiatorConfig{Keys: map[seal.DeviceAddr]seal.Key{}}
	for _, a := range args {
		k, err := seal.LoadKeyFile(a.File)
		if err != nil {
			return cfg, fmt.Errorf("--auth-key: %w", err)
		}
		if a.Device == nil {
			cfg.DefaultKey = k
		} else {
			cfg.Keys[*a.Device] = k
		}
	}
	return cfg, nil
}

// formatAuth prints the sealing layers' sessions, one line per target.
func formatAuth(w io.Writer, stats []seal.Stats, now time.Time) error {
	var peers []seal.PeerStats
	rejected := map[string]uint64{}
	var sessions int
	for _, st := range stats {
		peers = append(peers, st.Peers...)
		sessions += st.Sessions
		for r, n := range st.Rejected {
			rejected[r] += n
		}
	}
	if len(stats) == 0 {
		return nil
	}
	sort.Slice(peers, func(i, j int) bool {
		if peers[i].Device != peers[j].Device {
			return peers[i].Device < peers[j].Device
		}
		return peers[i].MAC < peers[j].MAC
	})
	fmt.Fprintf(w, "  authentication: %d session(s), rejected %s\n", sessions, formatCounts(rejected))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "    DEVICE\tTARGET\tSTATE\tSINCE\tSESSION\tKEY\tSUITE\tREKEYS\tREJECTED\tERROR")
	for _, p := range peers {
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%08x\t%08x\t%s\t%d\t%s\t%s\n", p.Device, p.MAC, p.State, ago(now, p.Since),
			p.Session, p.KeyID, orDash(p.Suite), p.Rekeys, formatCounts(p.Rejected), orDash(p.LastError))
	}
	return tw.Flush()
}

// formatCounts writes counters by name: "bad_tag 3, replay 1", or "none".
func formatCounts(m map[string]uint64) string {
	var parts []string
	for k, v := range m {
		parts = append(parts, fmt.Sprintf("%s %d", k, v))
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
