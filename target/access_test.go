package target

import (
	"slices"
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

func maskReq(t testing.TB, c *client, cmd aoe.MACMaskCommand, dirs ...aoe.Directive) *aoe.Frame {
	t.Helper()
	arg, err := (&aoe.MACMask{Command: cmd, Directives: dirs}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return c.request(aoe.CommandMACMask, arg)
}

func decodeMask(t testing.TB, f *aoe.Frame) *aoe.MACMask {
	t.Helper()
	var m aoe.MACMask
	if err := m.UnmarshalBinary(f.Arg); err != nil {
		t.Fatalf("decode MAC mask response: %v", err)
	}
	return &m
}

func maskMACs(m *aoe.MACMask) []aoe.MAC {
	var macs []aoe.MAC
	for _, d := range m.Directives {
		macs = append(macs, d.MAC)
	}
	return macs
}

func add(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveAdd, MAC: m} }
func del(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveDelete, MAC: m} }

func TestMACMask(t *testing.T) {
	h := newHarness(t)
	c := h.client
	macA := aoe.MAC{0x02, 0xaa, 0, 0, 0, 1}
	macB := aoe.MAC{0x02, 0xbb, 0, 0, 0, 2}
	macC := aoe.MAC{0x02, 0xcc, 0, 0, 0, 3}
	for _, st := range []struct {
		name      string
		cmd       aoe.MACMaskCommand
		dirs      []aoe.Directive
		wantMErr  aoe.MACMaskError
		wantCount int       // directive count in the answer
		wantList  []aoe.MAC // the mask afterwards
	}{
		{name: "read empty", cmd: aoe.MACMaskRead, wantList: nil},
		{name: "add two", cmd: aoe.MACMaskEdit, dirs: []aoe.Directive{add(clientMAC), add(macA)}, wantCount: 2, wantList: []aoe.MAC{clientMAC, macA}},
		{name: "add again", cmd: aoe.MACMaskEdit, dirs: []aoe.Directive{add(macA)}, wantCount: 2, wantList: []aoe.MAC{clientMAC, macA}},
		{name: "no-op directive", cmd: aoe.MACMaskEdit, dirs: []aoe.Directive{{Command: aoe.DirectiveNone, MAC: macB}}, wantCount: 2, wantList: []aoe.MAC{clientMAC, macA}},
		{name: "delete", cmd: aoe.MACMaskEdit, dirs: []aoe.Directive{del(macA), add(macB)}, wantCount: 2, wantList: []aoe.MAC{clientMAC, macB}},
		{name: "delete absent", cmd: aoe.MACMaskEdit, dirs: []aoe.Directive{del(macC)}, wantCount: 2, wantList: []aoe.MAC{clientMAC, macB}},
		{
			name: "bad directive", cmd: aoe.MACMaskEdit,
			dirs:     []aoe.Directive{add(macC), {Command: 7, MAC: macA}, add(macA)},
			wantMErr: aoe.MACMaskErrorBadDirective, wantCount: 1,
			// Directives before the bad one took effect, none after.
			wantList: []aoe.MAC{clientMAC, macB, macC},
		},
		{
			name: "group address", cmd: aoe.MACMaskEdit,
			dirs:     []aoe.Directive{add(aoe.BroadcastMAC)},
			wantMErr: aoe.MACMaskErrorBadDirective, wantCount: 0,
			wantList: []aoe.MAC{clientMAC, macB, macC},
		},
		{name: "read", cmd: aoe.MACMaskRead, wantCount: 3, wantList: []aoe.MAC{clientMAC, macB, macC}},
	} {
		t.Run(st.name, func(t *testing.T) {
			resp := c.roundTrip(t, maskReq(t, c, st.cmd, st.dirs...))
			checkResponse(t, resp, 0)
			m := decodeMask(t, resp)
			if m.Error != st.wantMErr {
				t.Errorf("merror %d, want %d", m.Error, st.wantMErr)
			}
			if st.wantMErr == 0 {
				if !slices.Equal(maskMACs(m), st.wantList) {
					t.Errorf("answer lists %v, want %v", maskMACs(m), st.wantList)
				}
				for _, d := range m.Directives {
					if d.Command != aoe.DirectiveNone {
						t.Errorf("listed directive with dcmd %d", d.Command)
					}
				}
			}
			if len(m.Directives) != st.wantCount {
				t.Errorf("directive count %d, want %d", len(m.Directives), st.wantCount)
			}
			if got := h.srv.access.Load().mask; !slices.Equal(got, st.wantList) {
				t.Errorf("mask is %v, want %v", got, st.wantList)
			}
		})
	}

	// A station outside the mask is ignored; one inside is served.
	other := newClient(t, h.hub, otherMAC, 1500)
	before := h.srv.Stats().Dropped["mac_mask"]
	other.expectNoResponse(t, readReq(other, t, 0, 1))
	other.expectNoResponse(t, configReq(t, other, aoe.ConfigRead, ""))
	if got := h.srv.Stats().Dropped["mac_mask"]; got != before+2 {
		t.Errorf("mac_mask = %d, was %d", got, before)
	}
	checkResponse(t, c.roundTrip(t, readReq(c, t, 0, 1)), 0)

	// Emptying the list serves everyone again.
	resp := c.roundTrip(t, maskReq(t, c, aoe.MACMaskEdit, del(clientMAC), del(macB), del(macC)))
	if m := decodeMask(t, resp); m.Error != 0 || len(m.Directives) != 0 {
		t.Fatalf("emptying the mask: %+v", m)
	}
	checkResponse(t, other.roundTrip(t, readReq(other, t, 0, 1)), 0)
}

func TestMACMaskFull(t *testing.T) {
	h := newHarness(t)
	c := h.client
	// Fill the list in edits of 60 directives (a 1500-byte frame holds
	// 185), starting with ourselves so we stay served.
	var all []aoe.MAC
	all = append(all, clientMAC)
	for i := 1; len(all) < MaxMACMask; i++ {
		all = append(all, aoe.MAC{0x02, 0x10, 0, 0, byte(i >> 8), byte(i)})
	}
	for start := 0; start < len(all); start += 60 {
		var dirs []aoe.Directive
		for _, m := range all[start:min(start+60, len(all))] {
			dirs = append(dirs, add(m))
		}
		resp := c.roundTrip(t, maskReq(t, c, aoe.MACMaskEdit, dirs...))
		if m := decodeMask(t, resp); m.Error != 0 {
			t.Fatalf("filling: merror %d", m.Error)
		}
	}
	extra1 := aoe.MAC{0x02, 0x20, 0, 0, 0, 1}
	extra2 := aoe.MAC{0x02, 0x20, 0, 0, 0, 2}
	// Deleting one and adding two: the second add finds the list full.
	resp := c.roundTrip(t, maskReq(t, c, aoe.MACMaskEdit, del(all[5]), add(extra1), add(all[0]), add(extra2)))
	checkResponse(t, resp, 0)
	m := decodeMask(t, resp)
	if m.Error != aoe.MACMaskErrorListFull || len(m.Directives) != 3 {
		t.Fatalf("merror %d with count %d, want list full at index 3", m.Error, len(m.Directives))
	}
	got := h.srv.access.Load().mask
	if len(got) != MaxMACMask || !slices.Contains(got, extra1) || slices.Contains(got, extra2) || slices.Contains(got, all[5]) {
		t.Errorf("mask after the failed edit: %d entries", len(got))
	}
	if n := h.srv.Stats().Errors["mask_list_full"]; n != 1 {
		t.Errorf("mask_list_full = %d", n)
	}
	// The full list is still readable in one frame.
	resp = c.roundTrip(t, maskReq(t, c, aoe.MACMaskRead))
	if m := decodeMask(t, resp); len(m.Directives) != MaxMACMask {
		t.Errorf("read lists %d", len(m.Directives))
	}
}

func TestAllowedMACs(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.AllowedMACs = []aoe.MAC{clientMAC} }))
	other := newClient(t, h.hub, otherMAC, 1500)
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), 0)
	other.expectNoResponse(t, readReq(other, t, 0, 1))
	resp := h.client.roundTrip(t, maskReq(t, h.client, aoe.MACMaskRead))
	if got := maskMACs(decodeMask(t, resp)); !slices.Equal(got, []aoe.MAC{clientMAC}) {
		t.Errorf("mask %v", got)
	}
}

func reserveReq(t testing.TB, c *client, cmd aoe.ReserveCommand, macs ...aoe.MAC) *aoe.Frame {
	t.Helper()
	arg, err := (&aoe.ReserveRelease{Command: cmd, MACs: macs}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return c.request(aoe.CommandReserveRelease, arg)
}

func decodeReserve(t testing.TB, f *aoe.Frame) []aoe.MAC {
	t.Helper()
	var r aoe.ReserveRelease
	if err := r.UnmarshalBinary(f.Arg); err != nil {
		t.Fatalf("decode reserve response: %v", err)
	}
	if len(r.MACs) == 0 {
		return nil
	}
	return r.MACs
}

func TestReserveRelease(t *testing.T) {
	h := newHarness(t)
	a := h.client
	b := newClient(t, h.hub, otherMAC, 1500)
	identify := func(c *client) *aoe.Frame {
		return c.request(aoe.CommandATA, ataArg(t, aoe.ATA{SectorCount: 1, CmdStatus: aoe.ATAIdentifyDevice}))
	}
	for _, st := range []struct {
		name    string
		from    *client
		req     func(c *client) *aoe.Frame
		wantErr aoe.Error
		want    []aoe.MAC // list in the answer (reserve requests)
	}{
		{name: "read unreserved", from: a, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveRead) }},
		{name: "reserve to A", from: a, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveSet, clientMAC) }, want: []aoe.MAC{clientMAC}},
		{name: "A reads", from: a, req: func(c *client) *aoe.Frame { return readReq(c, t, 0, 1) }},
		{name: "A writes", from: a, req: func(c *client) *aoe.Frame { return writeReq(c, t, 0, pattern(512, 1)) }},
		{name: "B reads", from: b, req: func(c *client) *aoe.Frame { return readReq(c, t, 0, 1) }, wantErr: aoe.ErrorTargetReserved},
		{name: "B writes", from: b, req: func(c *client) *aoe.Frame { return writeReq(c, t, 0, pattern(512, 2)) }, wantErr: aoe.ErrorTargetReserved},
		{name: "B flushes", from: b, req: func(c *client) *aoe.Frame {
			return c.request(aoe.CommandATA, ataArg(t, aoe.ATA{CmdStatus: aoe.ATAFlushCacheExt}))
		}, wantErr: aoe.ErrorTargetReserved},
		{name: "B identifies", from: b, req: identify},
		{name: "B reads the reservation", from: b, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveRead) }, want: []aoe.MAC{clientMAC}},
		{name: "B may not reserve", from: b, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveSet, otherMAC) },
			wantErr: aoe.ErrorTargetReserved, want: []aoe.MAC{clientMAC}},
		{name: "B may not release", from: b, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveSet) },
			wantErr: aoe.ErrorTargetReserved, want: []aoe.MAC{clientMAC}},
		{name: "A shares with B", from: a, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveSet, clientMAC, otherMAC) },
			want: []aoe.MAC{clientMAC, otherMAC}},
		{name: "B reads now", from: b, req: func(c *client) *aoe.Frame { return readReq(c, t, 0, 1) }},
		{name: "B force-sets", from: b, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveForceSet, otherMAC) },
			want: []aoe.MAC{otherMAC}},
		{name: "A refused now", from: a, req: func(c *client) *aoe.Frame { return readReq(c, t, 0, 1) }, wantErr: aoe.ErrorTargetReserved},
		{name: "A force-sets", from: a, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveForceSet, clientMAC) },
			want: []aoe.MAC{clientMAC}},
		{name: "A releases", from: a, req: func(c *client) *aoe.Frame { return reserveReq(t, c, aoe.ReserveSet) }},
		{name: "B reads after release", from: b, req: func(c *client) *aoe.Frame { return readReq(c, t, 0, 1) }},
	} {
		t.Run(st.name, func(t *testing.T) {
			f := st.req(st.from)
			resp := st.from.roundTrip(t, f)
			checkResponse(t, resp, st.wantErr)
			if f.Command == aoe.CommandReserveRelease {
				if got := decodeReserve(t, resp); !slices.Equal(got, st.want) {
					t.Errorf("answer lists %v, want %v", got, st.want)
				}
			}
		})
	}
	if n := h.srv.Stats().Errors["aoe_target_reserved"]; n != 6 {
		t.Errorf("aoe_target_reserved = %d", n)
	}
}
