package target_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/aoetest"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/internal/testenv"
)

// secondClient adds a macvlan interface on the client's end of the veth
// pair and a client on it: a second initiator with an address of its own
// on the same wire, for the MAC mask and reservation tests.
func (r *rig) secondClient(t *testing.T) (*aoetest.Client, aoe.MAC) {
	t.Helper()
	const iface = "ibmv0"
	testenv.Run(t, r.cli, "ip", "link", "add", iface, "link", r.veth.IfB, "type", "macvlan", "mode", "bridge")
	testenv.Run(t, r.cli, "ip", "link", "set", iface, "up")
	testenv.WaitLinkReady(t, r.cli, iface)
	link := testenv.ListenRawIn(t, r.cli, iface, rawlink.Config{})
	c := aoetest.NewClient(link, aoetest.ClientOptions{Timeout: 300 * time.Millisecond, Retries: 5})
	t.Cleanup(func() { c.Close() })
	return c, link.HardwareAddr()
}

// accessRig starts ironblade 1 0 on a fresh rig and returns the rig and
// the target as seen by the first client.
func accessRig(t *testing.T, bin string) (*rig, aoetest.Device) {
	t.Helper()
	r := newRig(t, bin, 1500)
	b := r.start(t, "1", "0", r.veth.IfA, newDisk(t, 2048))
	t.Cleanup(func() {
		if b.Running() {
			stopBlade(t, b)
		}
	})
	return r, r.discover(t, 1, 0)
}

// configRequest sends a Query Config request and returns the answer's
// config string. A short step timeout makes "no answer" quick.
func configRequest(t *testing.T, c *aoetest.Client, dev aoetest.Device, ccmd aoe.ConfigCommand, s string, wait time.Duration) (string, error) {
	t.Helper()
	arg, err := (&aoe.Config{Command: ccmd, String: []byte(s)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := c.Do(ctx, dev.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandQueryConfig}, arg)
	if f.Arg == nil {
		return "", err
	}
	var cfg aoe.Config
	if derr := cfg.UnmarshalBinary(f.Arg); derr != nil {
		t.Fatalf("config answer: %v", derr)
	}
	return string(cfg.String), err
}

// testE2EConfigString walks the Query Config commands: read, set, set over
// an existing string (error 4), test, test prefix (no answer on mismatch)
// and force set.
func testE2EConfigString(t *testing.T, bin string) {
	r, dev := accessRig(t, bin)
	c := r.client
	const answer, silence = 3 * time.Second, 500 * time.Millisecond
	steps := []struct {
		name    string
		ccmd    aoe.ConfigCommand
		arg     string
		want    string // the string in the answer
		wantErr error  // nil, an aoe.Error, or errNoAnswer's
		wait    time.Duration
	}{
		{"read empty", aoe.ConfigRead, "", "", nil, answer},
		{"set", aoe.ConfigSet, "ib-e2e", "ib-e2e", nil, answer},
		{"set over a string", aoe.ConfigSet, "other", "ib-e2e", aoe.ErrorConfigStringPresent, answer},
		{"test match", aoe.ConfigTest, "ib-e2e", "ib-e2e", nil, answer},
		{"test mismatch", aoe.ConfigTest, "ib-", "", aoe.ErrNoResponse, silence},
		{"test prefix match", aoe.ConfigTestPrefix, "ib-", "ib-e2e", nil, answer},
		{"test prefix mismatch", aoe.ConfigTestPrefix, "xx", "", aoe.ErrNoResponse, silence},
		{"force set", aoe.ConfigForceSet, "forced", "forced", nil, answer},
		{"read", aoe.ConfigRead, "", "forced", nil, answer},
	}
	for _, s := range steps {
		got, err := configRequest(t, c, dev, s.ccmd, s.arg, s.wait)
		switch {
		case errors.Is(s.wantErr, aoe.ErrNoResponse):
			if !errNoAnswer(err) {
				t.Errorf("%s: %q, %v; want no answer", s.name, got, err)
			}
		case !errors.Is(err, s.wantErr) || (s.wantErr == nil && err != nil):
			t.Errorf("%s: error %v, want %v", s.name, err, s.wantErr)
		case got != s.want:
			t.Errorf("%s: config string %q, want %q", s.name, got, s.want)
		}
	}
}

// macMaskRequest sends a MAC Mask List request and returns the answer.
func macMaskRequest(c *aoetest.Client, dev aoetest.Device, req aoe.MACMask, wait time.Duration) (aoe.MACMask, error) {
	arg, err := req.MarshalBinary()
	if err != nil {
		return aoe.MACMask{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	f, err := c.Do(ctx, dev.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandMACMask}, arg)
	if err != nil {
		return aoe.MACMask{}, err
	}
	var m aoe.MACMask
	return m, m.UnmarshalBinary(f.Arg)
}

// maskMACs lists the addresses of a MAC Mask List answer.
func maskMACs(m aoe.MACMask) []aoe.MAC {
	var macs []aoe.MAC
	for _, d := range m.Directives {
		macs = append(macs, d.MAC)
	}
	return macs
}

// served reports whether c gets answers from the target: a Query Config
// read and a one-sector read.
func served(t *testing.T, c *aoetest.Client, dev aoetest.Device) bool {
	t.Helper()
	_, cfgErr := configRequest(t, c, dev, aoe.ConfigRead, "", 600*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	_, ataErr := c.ATA(ctx, dev, aoe.ATA{Flags: aoe.ATAFlagExtended, SectorCount: 1, CmdStatus: aoe.ATAReadSectorsExt})
	switch {
	case cfgErr == nil && ataErr == nil:
		return true
	case errNoAnswer(cfgErr) && errNoAnswer(ataErr):
		return false
	}
	t.Fatalf("Query Config: %v; read: %v; want both answered or neither", cfgErr, ataErr)
	return false
}

// testE2EMACMask edits the MAC mask list from two initiators: a masked
// initiator gets no answer at all, a bad directive stops the edit.
func testE2EMACMask(t *testing.T, bin string) {
	r, dev := accessRig(t, bin)
	c2, mac2 := r.secondClient(t)
	mac1 := r.veth.MACB
	add := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveAdd, MAC: m} }
	del := func(m aoe.MAC) aoe.Directive { return aoe.Directive{Command: aoe.DirectiveDelete, MAC: m} }
	edit := func(c *aoetest.Client, want []aoe.MAC, dirs ...aoe.Directive) {
		t.Helper()
		m, err := macMaskRequest(c, dev, aoe.MACMask{Command: aoe.MACMaskEdit, Directives: dirs}, 3*time.Second)
		if err != nil {
			t.Fatalf("MAC mask edit %v: %v", dirs, err)
		}
		if m.Error != aoe.MACMaskErrorNone || !slices.Equal(maskMACs(m), want) {
			t.Fatalf("MAC mask edit %v: error %d, list %v; want list %v", dirs, m.Error, maskMACs(m), want)
		}
	}
	check := func(c *aoetest.Client, who string, want bool) {
		t.Helper()
		if got := served(t, c, dev); got != want {
			t.Fatalf("%s served: %v, want %v", who, got, want)
		}
	}

	m, err := macMaskRequest(r.client, dev, aoe.MACMask{Command: aoe.MACMaskRead}, 3*time.Second)
	if err != nil || len(m.Directives) != 0 {
		t.Fatalf("MAC mask read: %v, %v; want an empty list", maskMACs(m), err)
	}
	edit(r.client, []aoe.MAC{mac2}, add(mac2))
	check(r.client, "masked client 1", false)
	check(c2, "client 2 in the list", true)
	edit(c2, []aoe.MAC{mac2, mac1}, add(mac1))
	check(r.client, "client 1 in the list", true)
	edit(c2, []aoe.MAC{mac1}, del(mac2))
	check(c2, "masked client 2", false)

	// A bad directive: the ones before it apply, the answer stops at it.
	other := aoe.MAC{0x02, 0, 0, 0, 0xbe, 0xef}
	dirs := []aoe.Directive{add(other), {Command: 7, MAC: mac2}, add(mac2)}
	m, err = macMaskRequest(r.client, dev, aoe.MACMask{Command: aoe.MACMaskEdit, Directives: dirs}, 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.Error != aoe.MACMaskErrorBadDirective || len(m.Directives) != 1 {
		t.Errorf("edit with a bad second directive: error %d, %d directives; want error %d and 1",
			m.Error, len(m.Directives), aoe.MACMaskErrorBadDirective)
	}
	m, err = macMaskRequest(r.client, dev, aoe.MACMask{Command: aoe.MACMaskEdit,
		Directives: []aoe.Directive{add(aoe.BroadcastMAC)}}, 3*time.Second)
	if err != nil || m.Error != aoe.MACMaskErrorBadDirective {
		t.Errorf("adding the broadcast address: error %d, %v; want error %d", m.Error, err, aoe.MACMaskErrorBadDirective)
	}
	edit(r.client, nil, del(other), del(mac1))
	check(r.client, "client 1, empty list", true)
	check(c2, "client 2, empty list", true)
}

// reserveRequest sends a Reserve/Release request and returns the list in
// the answer.
func reserveRequest(t *testing.T, c *aoetest.Client, dev aoetest.Device, rcmd aoe.ReserveCommand, macs ...aoe.MAC) ([]aoe.MAC, error) {
	t.Helper()
	arg, err := (&aoe.ReserveRelease{Command: rcmd, MACs: macs}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	f, err := c.Do(ctx, dev.MAC, aoe.Header{Major: dev.Shelf, Minor: dev.Slot, Command: aoe.CommandReserveRelease}, arg)
	if f.Arg == nil {
		t.Fatalf("reserve/release %d %v: no answer: %v", rcmd, macs, err)
	}
	var rr aoe.ReserveRelease
	if derr := rr.UnmarshalBinary(f.Arg); derr != nil {
		t.Fatalf("reserve/release answer: %v", derr)
	}
	return rr.MACs, err
}

// testE2EReserve reserves the target for one initiator: the other gets
// error 6 for ATA commands but IDENTIFY, cannot take the reservation
// without forcing it, and nobody but a holder can release it.
func testE2EReserve(t *testing.T, bin string) {
	r, dev := accessRig(t, bin)
	c1, mac1 := r.client, r.veth.MACB
	c2, mac2 := r.secondClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	reserve := func(c *aoetest.Client, who string, rcmd aoe.ReserveCommand, wantErr error, wantList []aoe.MAC, macs ...aoe.MAC) {
		t.Helper()
		list, err := reserveRequest(t, c, dev, rcmd, macs...)
		if !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Errorf("%s: reserve %d %v: %v, want %v", who, rcmd, macs, err, wantErr)
		}
		if !slices.Equal(list, wantList) {
			t.Errorf("%s: reserve %d %v: list %v, want %v", who, rcmd, macs, list, wantList)
		}
	}
	tryIO := func(c *aoetest.Client, who string, wantErr error) {
		t.Helper()
		p := make([]byte, 2*aoe.SectorSize)
		if err := c.ReadAt(ctx, dev, p, 0, 1); !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Errorf("%s: read: %v, want %v", who, err, wantErr)
		}
		if err := c.WriteAt(ctx, dev, p, 0, 1); !errors.Is(err, wantErr) || (wantErr == nil && err != nil) {
			t.Errorf("%s: write: %v, want %v", who, err, wantErr)
		}
		d := dev
		if _, err := c.Identify(ctx, &d); err != nil {
			t.Errorf("%s: IDENTIFY: %v; it is allowed whatever the reservation", who, err)
		}
	}

	reserve(c1, "client 1", aoe.ReserveRead, nil, nil)
	reserve(c1, "client 1", aoe.ReserveSet, nil, []aoe.MAC{mac1}, mac1)
	tryIO(c1, "client 1 (holder)", nil)
	tryIO(c2, "client 2", aoe.ErrorTargetReserved)
	reserve(c2, "client 2", aoe.ReserveSet, aoe.ErrorTargetReserved, []aoe.MAC{mac1}, mac2)
	reserve(c2, "client 2", aoe.ReserveForceSet, nil, []aoe.MAC{mac2}, mac2)
	tryIO(c2, "client 2 (holder)", nil)
	tryIO(c1, "client 1", aoe.ErrorTargetReserved)
	reserve(c1, "client 1", aoe.ReserveSet, aoe.ErrorTargetReserved, []aoe.MAC{mac2})
	reserve(c2, "client 2", aoe.ReserveSet, nil, nil)
	tryIO(c1, "client 1, released", nil)
	tryIO(c2, "client 2, released", nil)
}
