package target

import (
	"testing"

	"github.com/ironblade/ironblade/aoe"
)

func configReq(t testing.TB, c *client, ccmd aoe.ConfigCommand, str string) *aoe.Frame {
	t.Helper()
	arg, err := (&aoe.Config{Command: ccmd, String: []byte(str)}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return c.request(aoe.CommandQueryConfig, arg)
}

func TestQueryConfig(t *testing.T) {
	h := newHarness(t, withConfig(func(c *Config) { c.BufferCount = 32; c.Version = "2.5" }))
	c := h.client
	type step struct {
		name    string
		ccmd    aoe.ConfigCommand
		str     string
		silent  bool // no answer expected
		wantErr aoe.Error
		want    string // config string in the answer
	}
	for _, st := range []step{
		{name: "read empty", ccmd: aoe.ConfigRead, want: ""},
		{name: "test empty matches empty", ccmd: aoe.ConfigTest, str: "", want: ""},
		{name: "test mismatch", ccmd: aoe.ConfigTest, str: "x", silent: true},
		{name: "set", ccmd: aoe.ConfigSet, str: "host-a:/data", want: "host-a:/data"},
		{name: "set same string again", ccmd: aoe.ConfigSet, str: "host-a:/data", want: "host-a:/data"},
		{name: "set different string", ccmd: aoe.ConfigSet, str: "host-b", wantErr: aoe.ErrorConfigStringPresent, want: "host-a:/data"},
		{name: "set empty string over one", ccmd: aoe.ConfigSet, str: "", wantErr: aoe.ErrorConfigStringPresent, want: "host-a:/data"},
		{name: "read", ccmd: aoe.ConfigRead, str: "ignored", want: "host-a:/data"},
		{name: "test exact", ccmd: aoe.ConfigTest, str: "host-a:/data", want: "host-a:/data"},
		{name: "test prefix only", ccmd: aoe.ConfigTest, str: "host-a", silent: true},
		{name: "test longer", ccmd: aoe.ConfigTest, str: "host-a:/data/more", silent: true},
		{name: "prefix", ccmd: aoe.ConfigTestPrefix, str: "host-a", want: "host-a:/data"},
		{name: "empty prefix", ccmd: aoe.ConfigTestPrefix, str: "", want: "host-a:/data"},
		{name: "prefix mismatch", ccmd: aoe.ConfigTestPrefix, str: "host-b", silent: true},
		{name: "prefix longer than string", ccmd: aoe.ConfigTestPrefix, str: "host-a:/data/", silent: true},
		{name: "force set", ccmd: aoe.ConfigForceSet, str: "host-b", want: "host-b"},
		{name: "force set empty", ccmd: aoe.ConfigForceSet, str: "", want: ""},
		{name: "set after clearing", ccmd: aoe.ConfigSet, str: "host-c", want: "host-c"},
	} {
		t.Run(st.name, func(t *testing.T) {
			f := configReq(t, c, st.ccmd, st.str)
			if st.silent {
				before := h.srv.Stats().Dropped["config_mismatch"]
				c.expectNoResponse(t, f)
				if got := h.srv.Stats().Dropped["config_mismatch"]; got != before+1 {
					t.Errorf("config_mismatch = %d, was %d", got, before)
				}
				return
			}
			resp := c.roundTrip(t, f)
			checkResponse(t, resp, st.wantErr)
			cfg := decodeConfig(t, resp)
			if string(cfg.String) != st.want {
				t.Errorf("config string %q, want %q", cfg.String, st.want)
			}
			if cfg.BufferCount != 32 || cfg.FirmwareVersion != 0x0205 || cfg.SectorCount != 2 ||
				cfg.Version != aoe.Version || cfg.Command != st.ccmd {
				t.Errorf("config response %+v", cfg)
			}
		})
	}
	if got := h.srv.Stats().Errors["aoe_config_string_present"]; got != 2 {
		t.Errorf("aoe_config_string_present = %d", got)
	}
}

func TestConfigAnsweredWhenReserved(t *testing.T) {
	h := newHarness(t)
	other := newClient(t, h.hub, otherMAC, 1500)
	resp := other.roundTrip(t, reserveReq(t, other, aoe.ReserveSet, otherMAC))
	checkResponse(t, resp, 0)
	// Reserved to another host: ATA is refused, Query Config answered.
	checkResponse(t, h.client.roundTrip(t, readReq(h.client, t, 0, 1)), aoe.ErrorTargetReserved)
	checkResponse(t, h.client.roundTrip(t, configReq(t, h.client, aoe.ConfigRead, "")), 0)
	checkResponse(t, h.client.roundTrip(t, configReq(t, h.client, aoe.ConfigForceSet, "mine")), 0)
}

func TestConfigStringOfMaxLength(t *testing.T) {
	h := newHarness(t)
	long := make([]byte, aoe.MaxConfigStringLen)
	for i := range long {
		long[i] = 'a' + byte(i%26)
	}
	resp := h.client.roundTrip(t, configReq(t, h.client, aoe.ConfigSet, string(long)))
	checkResponse(t, resp, 0)
	if got := decodeConfig(t, resp).String; string(got) != string(long) {
		t.Errorf("%d-byte string came back as %d bytes", len(long), len(got))
	}
}
