package main

import (
	"strings"
	"testing"
)

func TestParseDeviceName(t *testing.T) {
	tests := []struct {
		in      string
		want    deviceAddr
		wantErr string
	}{
		{in: "e1.0", want: deviceAddr{1, 0}},
		{in: "e0.0", want: deviceAddr{0, 0}},
		{in: "e65534.254", want: deviceAddr{65534, 254}},
		{in: "1.0", want: deviceAddr{1, 0}},
		{in: "etherd/e12.3", want: deviceAddr{12, 3}},
		{in: "", wantErr: "no '.'"},
		{in: "e1", wantErr: "no '.'"},
		{in: "e.0", wantErr: "shelf is empty"},
		{in: "e1.", wantErr: "slot is empty"},
		{in: "e65535.0", wantErr: "out of range 0-65534"},
		{in: "e1.255", wantErr: "out of range 0-254"},
		{in: "e01.0", wantErr: "leading zero"},
		{in: "e1.00", wantErr: "leading zero"},
		{in: "e-1.0", wantErr: "not a decimal number"},
		{in: "e+1.0", wantErr: "not a decimal number"},
		{in: "e1.0.0", wantErr: "not a decimal number"},
		{in: "e 1.0", wantErr: "not a decimal number"},
		{in: "E1.0", wantErr: "not a decimal number"},
		{in: "e99999999999999999999.0", wantErr: "out of range"},
		{in: "/dev/etherd/e1.0", wantErr: "not a decimal number"},
	}
	for _, tc := range tests {
		got, err := parseDeviceName(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseDeviceName(%q) = %v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseDeviceName(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestDeviceAddrString(t *testing.T) {
	if s := (deviceAddr{Shelf: 65534, Slot: 254}).String(); s != "e65534.254" {
		t.Errorf("String = %q", s)
	}
}

// FuzzParseDeviceName checks that any input either fails or parses to an
// address whose canonical name parses back to the same address.
func FuzzParseDeviceName(f *testing.F) {
	for _, s := range []string{"e1.0", "1.0", "etherd/e3.4", "e65534.254", "e65535.0", "e01.0", "", ".", "e1.0\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseDeviceName(s)
		if err != nil {
			return
		}
		b, err := parseDeviceName(a.String())
		if err != nil || b != a {
			t.Fatalf("%q parsed to %v, whose name %q parses to %v, %v", s, a, a.String(), b, err)
		}
		if a.Shelf == 0xffff || a.Slot == 0xff {
			t.Fatalf("%q parsed to the broadcast address %v", s, a)
		}
	})
}
