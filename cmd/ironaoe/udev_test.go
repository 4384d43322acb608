package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// udevDir holds the udev rule that names attached devices /dev/aoe/eS.L,
// and its helper.
const udevDir = "../../scripts/udev"

// TestUdevName checks the udev helper against the backend identifiers
// attach sets, and against others, which must make no link. udevd does
// not run in the test environment, so the rule itself is checked only for
// matching what attach sets (see docs/ironaoe.md for a check on a host).
func TestUdevName(t *testing.T) {
	helper := filepath.Join(udevDir, "ironaoe-udev-name")
	for _, sh := range []string{"sh", "dash", "bash", "busybox"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			continue
		}
		t.Run(sh, func(t *testing.T) {
			run := func(backend string) (string, bool) {
				args := []string{helper, backend}
				if sh == "busybox" {
					args = append([]string{"sh"}, args...)
				}
				out, err := exec.Command(path, args...).Output()
				return string(out), err == nil
			}
			for _, d := range []deviceAddr{{0, 0}, {1, 0}, {7, 12}, {65534, 254}} {
				want := d.String()
				if out, ok := run(backendID(d.String())); !ok || out != want+"\n" {
					t.Errorf("%s: printed %q (success %v), want %q", backendID(d.String()), out, ok, want)
				}
			}
			for _, bad := range []string{"", "ironaoe:", "ironaoe:e1", "ironaoe:e1.", "ironaoe:e.1", "ironaoe:e65535.0",
				"ironaoe:e1.255", "ironaoe:e01.0", "ironaoe:e1.0.1", "ironaoe:e1./x", "ironaoe:e1.0 ", "ironaoe:e$(id).0",
				"ironaoe:e123456.0", "nbd-client:e1.0", "e1.0"} {
				if out, ok := run(bad); ok || out != "" {
					t.Errorf("%q: printed %q (success %v), want nothing and a failure", bad, out, ok)
				}
			}
		})
	}
}

// TestUdevRule checks that the rule matches the backend identifiers attach
// sets and calls the helper with it.
func TestUdevRule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(udevDir, "60-ironaoe.rules"))
	if err != nil {
		t.Fatal(err)
	}
	rule := string(b)
	prefix := strings.TrimSuffix(backendID("e1.0"), "e1.0")
	for _, want := range []string{
		`ATTR{backend}=="` + prefix + `e*"`, `ATTRS{backend}=="` + prefix + `e*"`,
		`PROGRAM="ironaoe-udev-name $attr{backend}"`, `SYMLINK+="aoe/%c"`, `SYMLINK+="aoe/%cp%n"`,
		`ATTR{size}=="0", GOTO="ironaoe_end"`, `LABEL="ironaoe_end"`,
	} {
		if !strings.Contains(rule, want) {
			t.Errorf("60-ironaoe.rules lacks %s", want)
		}
	}
}
