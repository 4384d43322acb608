// Package systemd holds the project's systemd units; its tests check them
// with systemd-analyze (see docs/systemd.md).
package systemd

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/internal/testenv"
)

func TestMain(m *testing.M) { testenv.RunTests(m) }

// units names each unit file with the name verify loads it as: templates
// with an instance.
var units = map[string]string{
	"ironblade@.service":      "ironblade@e1.0.service",
	"ironaoe-attach@.service": "ironaoe-attach@e1.0.service",
	"ironaoe-serve.service":   "ironaoe-serve.service",
	"ironaoe-serve.socket":    "ironaoe-serve.socket",
}

// maxExposure is the highest `systemd-analyze security` exposure a service
// may have (0 is the best, 10 the worst; under 5 is "OK"). Raise it only
// with a reason.
const maxExposure = 4.5

// requireAnalyze skips the test without systemd-analyze.
func requireAnalyze(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skipf("systemd-analyze not found (%v): the units are not checked; install systemd", err)
	}
	return path
}

// newRoot builds a file system root for systemd-analyze --root: the
// system's own units (the targets ours depend on), ours in
// /etc/systemd/system, the binaries built from this tree where ExecStart
// looks for them, and kill for ExecReload. verify then checks every
// reference, the executables included.
func newRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	sysUnits := ""
	for _, d := range []string{"/usr/lib/systemd/system", "/lib/systemd/system"} {
		if fi, err := os.Stat(d); err == nil && fi.IsDir() {
			sysUnits = d
			break
		}
	}
	if sysUnits == "" {
		t.Skip("no system unit directory (/usr/lib/systemd/system): cannot check the units' dependencies")
	}
	dirs := []string{"usr/lib/systemd", "etc/systemd/system", "usr/local/sbin", "bin"}
	for _, d := range dirs {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "cp", "-a", sysUnits, filepath.Join(root, "usr/lib/systemd/system"))
	for file := range units {
		run(t, "cp", file, filepath.Join(root, "etc/systemd/system", file))
	}
	for _, pkg := range []string{"./cmd/ironblade", "./cmd/ironaoe"} {
		run(t, "cp", testenv.BuildBinary(t, pkg), filepath.Join(root, "usr/local/sbin")+"/")
	}
	kill, err := exec.LookPath("kill")
	if err != nil {
		t.Skipf("no kill command to stand for ExecReload's /bin/kill: %v", err)
	}
	run(t, "cp", kill, filepath.Join(root, "bin/kill"))
	return root
}

// run runs a command and fails the test if it fails.
func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// verify runs systemd-analyze verify on unit in root and returns what it
// said about our units (lines naming ironblade or ironaoe), and whether it
// failed. verify exits 0 after a mere warning (an unknown key, a bad
// value), so the lines are what counts.
func verify(t *testing.T, analyze, root, unit string) (problems []string, failed bool) {
	t.Helper()
	out, err := exec.Command(analyze, "verify", "--root="+root, "--man=no", unit).CombinedOutput()
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(line, "ironblade") || strings.Contains(line, "ironaoe") {
			problems = append(problems, line)
		} else if line != "" {
			t.Logf("verify %s (not about our units): %s", unit, line)
		}
	}
	return problems, err != nil
}

// TestVerifyUnits runs `systemd-analyze verify` on every unit, with the
// executables built from this tree in place: no warning and no error may
// come out.
func TestVerifyUnits(t *testing.T) {
	analyze := requireAnalyze(t)
	root := newRoot(t)
	for file, unit := range units {
		t.Run(file, func(t *testing.T) {
			problems, failed := verify(t, analyze, root, unit)
			if failed || len(problems) > 0 {
				t.Errorf("systemd-analyze verify %s (failed: %v):\n%s", unit, failed, strings.Join(problems, "\n"))
			}
		})
	}
}

// TestVerifyCatches checks that the check above is real: verify, run the
// same way, reports a misspelt key, a bad value and a missing executable.
func TestVerifyCatches(t *testing.T) {
	analyze := requireAnalyze(t)
	root := newRoot(t)
	path := filepath.Join(root, "etc/systemd/system/ironaoe-serve.service")
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, from, to string }{
		{"misspelt key", "\nProtectHome=yes\n", "\nProtectHme=yes\n"},
		{"bad value", "\nType=notify\n", "\nType=notfy\n"},
		{"missing executable", "ExecStart=/usr/local/sbin/ironaoe ", "ExecStart=/usr/local/sbin/ironaoe-missing "},
	} {
		bad := strings.Replace(string(good), c.from, c.to, 1)
		if bad == string(good) {
			t.Fatalf("%s: %q not in the unit", c.name, c.from)
		}
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if problems, failed := verify(t, analyze, root, "ironaoe-serve.service"); !failed && len(problems) == 0 {
			t.Errorf("verify missed a %s", c.name)
		}
	}
}

// exposureRE finds the score in `systemd-analyze security`'s last line.
var exposureRE = regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)

// TestSecurityExposure keeps the services' hardening: `systemd-analyze
// security --offline` scores each at most maxExposure.
func TestSecurityExposure(t *testing.T) {
	analyze := requireAnalyze(t)
	root := newRoot(t)
	for file, unit := range units {
		if !strings.HasSuffix(file, ".service") {
			continue
		}
		out, err := exec.Command(analyze, "security", "--offline=true", "--root="+root, "--no-pager", unit).CombinedOutput()
		m := exposureRE.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: %v, no score:\n%s", unit, err, out)
			continue
		}
		score, _ := strconv.ParseFloat(string(m[1]), 64)
		t.Logf("%s: exposure %.1f", unit, score)
		if score > maxExposure {
			t.Errorf("%s: exposure %.1f, want at most %.1f:\n%s", unit, score, maxExposure, out)
		}
	}
}

// TestServicesHardened checks the settings each service must have, which
// verify does not demand: Type=notify, a restart on failure, and the
// hardening the docs promise.
func TestServicesHardened(t *testing.T) {
	want := []string{"Type=notify", "NotifyAccess=main", "Restart=on-failure", "NoNewPrivileges=yes",
		"ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes", "LockPersonality=yes", "MemoryDenyWriteExecute=yes"}
	caps := map[string]string{
		"ironblade@.service":      "CAP_NET_RAW CAP_NET_ADMIN",
		"ironaoe-attach@.service": "CAP_NET_RAW CAP_NET_ADMIN CAP_SYS_ADMIN",
		"ironaoe-serve.service":   "CAP_NET_RAW CAP_NET_ADMIN",
	}
	for file, c := range caps {
		settings := readSettings(t, file)
		for _, w := range append(want, "CapabilityBoundingSet="+c) {
			k, v, _ := strings.Cut(w, "=")
			if settings[k] != v {
				t.Errorf("%s: %s=%q, want %q", file, k, settings[k], v)
			}
		}
		if !strings.Contains(settings["RestrictAddressFamilies"], "AF_PACKET") {
			t.Errorf("%s: RestrictAddressFamilies=%q leaves out AF_PACKET", file, settings["RestrictAddressFamilies"])
		}
	}
	if s := readSettings(t, "ironblade@.service"); s["WatchdogSec"] == "" || s["EnvironmentFile"] != "/etc/ironblade/%i.conf" {
		t.Errorf("ironblade@.service: WatchdogSec=%q, EnvironmentFile=%q", s["WatchdogSec"], s["EnvironmentFile"])
	}
}

// TestExampleConf checks that example.conf sets every variable
// ironblade@.service's ExecStart uses.
func TestExampleConf(t *testing.T) {
	conf := readSettings(t, "example.conf")
	exec := readSettings(t, "ironblade@.service")["ExecStart"]
	for _, v := range []string{"SHELF", "SLOT", "NETIF", "FILE", "OPTIONS"} {
		if !strings.Contains(exec, "$"+v) && !strings.Contains(exec, "${"+v+"}") {
			t.Errorf("ExecStart does not use $%s: %s", v, exec)
		}
		if conf[v] == "" {
			t.Errorf("example.conf does not set %s", v)
		}
	}
}

// readSettings reads the KEY=value lines of file (the last one of a key
// wins, comments and sections left out).
func readSettings(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	settings := make(map[string]string)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			settings[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return settings
}
