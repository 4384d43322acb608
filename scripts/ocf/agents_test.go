// Package ocf holds the tests of the OCF resource agents in this directory,
// ironblade (the target) and ironaoe (the client side), which Pacemaker runs
// as ocf:ironblade:ironblade and ocf:ironblade:ironaoe (docs/pacemaker.md).
// The agents are shell scripts; the tests run them, and Debian's ocf-tester
// against them, in network namespaces joined by a veth pair.
package ocf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd"
	"github.com/ironblade/ironblade/internal/netlab"
	"github.com/ironblade/ironblade/internal/testenv"
)

// TestMain builds the commands once for all the tests, and removes them at
// the end.
func TestMain(m *testing.M) { testenv.RunTests(m) }

// OCF exit codes (OCF resource agent API).
const (
	ocfSuccess         = 0
	ocfErrGeneric      = 1
	ocfErrInstalled    = 5
	ocfErrConfigured   = 6
	ocfNotRunning      = 7
	ocfRoot            = "/usr/lib/ocf"
	opTimeout          = 20 * time.Second // the operations' timeout the tests give the agents
	agentCommandWindow = time.Minute      // bounds one agent action or ocf-tester run
)

// agent is one resource of an agent: its script, the namespace it runs in
// and its parameters (OCF_RESKEY_*).
type agent struct {
	script string
	ns     *netlab.Netns
	name   string
	params map[string]string
}

// env is the environment Pacemaker would give the agent.
func (a *agent) env(extra ...string) []string {
	env := append(os.Environ(), "OCF_ROOT="+ocfRoot, "OCF_RESOURCE_INSTANCE="+a.name,
		"OCF_RA_VERSION_MAJOR=1", "OCF_RA_VERSION_MINOR=1",
		"OCF_RESKEY_CRM_meta_timeout="+strconv.Itoa(int(opTimeout/time.Millisecond)))
	for k, v := range a.params {
		env = append(env, "OCF_RESKEY_"+k+"="+v)
	}
	return append(env, extra...)
}

// run runs the agent's action in its namespace and returns its exit code
// and output.
func (a *agent) run(t *testing.T, action string, extraEnv ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), agentCommandWindow)
	defer cancel()
	cmd := a.ns.Command(ctx, a.script, action)
	cmd.Env = a.env(extraEnv...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("%s %s: %v\n%s", filepath.Base(a.script), action, err, out)
	return -1, ""
}

// must runs action and fails the test unless it returns want.
func (a *agent) must(t *testing.T, action string, want int) string {
	t.Helper()
	rc, out := a.run(t, action)
	if rc != want {
		t.Fatalf("%s %s: exit %d, want %d\n%s", filepath.Base(a.script), action, rc, want, out)
	}
	return out
}

// pid reads the pidfile the agent keeps.
func (a *agent) pid(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(a.params["pidfile"])
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pidfile %s: %v", a.params["pidfile"], err)
	}
	return pid
}

// ocfTester runs Debian's ocf-tester against the agent in its namespace and
// fails the test unless every check passes.
func (a *agent) ocfTester(t *testing.T) {
	t.Helper()
	args := []string{"-n", a.name}
	keys := make([]string, 0, len(a.params))
	for k := range a.params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "-o", k+"="+a.params[k])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*agentCommandWindow)
	defer cancel()
	cmd := a.ns.Command(ctx, "ocf-tester", append(args, a.script)...)
	cmd.Env = append(os.Environ(), "OCF_ROOT="+ocfRoot)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "passed all tests") {
		t.Fatalf("ocf-tester %s: %v\n%s\nlog:\n%s", filepath.Base(a.script), err, out, readFile(a.params["logfile"]))
	}
	t.Logf("ocf-tester %s:\n%s", filepath.Base(a.script), out)
}

// readFile returns a file's contents, or why it could not be read.
func readFile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// requireOCF skips the test without root or without ocf-tester (Debian's
// resource-agents package, which also has ocf-shellfuncs) and xmllint.
func requireOCF(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireCommands(t, "ocf-tester", "xmllint", "setsid")
	if _, err := os.Stat(filepath.Join(ocfRoot, "lib/heartbeat/ocf-shellfuncs")); err != nil {
		t.Skipf("needs resource-agents' ocf-shellfuncs (apt-get install resource-agents): %v", err)
	}
}

// scriptPath returns the absolute path of an agent in this directory.
func scriptPath(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// pair is a target namespace and a client namespace joined by a veth pair,
// with a disk file for the target and a directory for the agents' files.
type pair struct {
	target, client *netlab.Netns
	veth           *netlab.Veth
	disk, dir      string
}

func newPair(t *testing.T, diskBytes int64) *pair {
	t.Helper()
	p := &pair{target: testenv.NewNetns(t), client: testenv.NewNetns(t), dir: t.TempDir()}
	p.veth = testenv.NewVeth(t, p.target, p.client, 0)
	p.disk = filepath.Join(p.dir, "disk.img")
	if err := os.WriteFile(p.disk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p.disk, diskBytes); err != nil {
		t.Fatal(err)
	}
	return p
}

// targetAgent is the ironblade agent exporting the pair's disk as e1.2.
func (p *pair) targetAgent(t *testing.T) *agent {
	t.Helper()
	a := &agent{script: scriptPath(t, "ironblade"), ns: p.target, name: "tgt", params: map[string]string{
		"shelf": "1", "slot": "2", "netif": p.veth.IfA, "file": p.disk,
		"binary":            testenv.BuildBinary(t, "./cmd/ironblade"),
		"metrics":           "127.0.0.1:9192", // each namespace has its own loopback
		"announce_interval": "5s",
		"pidfile":           filepath.Join(p.dir, "tgt.pid"),
		"logfile":           filepath.Join(p.dir, "tgt.log"),
	}}
	// Whatever the test did, the target stops with it (the namespace's
	// removal would kill it too, but not cleanly).
	t.Cleanup(func() { a.run(t, "stop") })
	return a
}

// clientAgent is the ironaoe agent for e1.2 in the given mode.
func (p *pair) clientAgent(t *testing.T, mode string) *agent {
	t.Helper()
	a := &agent{script: scriptPath(t, "ironaoe"), ns: p.client, name: "cli-" + mode, params: map[string]string{
		"mode": mode, "device": "e1.2", "netif": p.veth.IfB,
		"binary":      testenv.BuildBinary(t, "./cmd/ironaoe"),
		"control_dir": filepath.Join(p.dir, "control"),
		"pidfile":     filepath.Join(p.dir, "cli.pid"),
		"logfile":     filepath.Join(p.dir, "cli.log"),
	}}
	if mode == "serve" {
		a.params["unix_socket"] = filepath.Join(p.dir, "run", "nbd.sock")
	}
	t.Cleanup(func() { a.run(t, "stop") })
	return a
}

// TestIronbladeAgentOCFTester runs ocf-tester against the target agent:
// meta-data valid against the OCF DTD, validate-all, monitor 7 when
// stopped, start, monitor, idempotent start and stop, reload.
func TestIronbladeAgentOCFTester(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 64<<20)
	p.targetAgent(t).ocfTester(t)
}

// TestIronaoeAgentOCFTesterServe runs ocf-tester against the client agent
// in serve mode, with the target started by its own agent.
func TestIronaoeAgentOCFTesterServe(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 64<<20)
	p.targetAgent(t).must(t, "start", ocfSuccess)
	p.clientAgent(t, "serve").ocfTester(t)
}

// TestIronaoeAgentOCFTesterAttach runs ocf-tester against the client agent
// in attach mode, which needs the kernel's nbd driver.
func TestIronaoeAgentOCFTesterAttach(t *testing.T) {
	requireOCF(t)
	if _, err := os.Stat("/sys/module/nbd"); err != nil {
		t.Skip("attach mode needs the nbd kernel module, which is not loaded here (modprobe nbd); serve mode is tested")
	}
	p := newPair(t, 64<<20)
	p.targetAgent(t).must(t, "start", ocfSuccess)
	p.clientAgent(t, "attach").ocfTester(t)
}

// TestIronbladeAgentMonitor checks that monitor sees a target that stops
// serving: OCF_ERR_GENERIC while its interface is down, OCF_NOT_RUNNING
// once the process is killed; that a lost carrier (the peer down, as in a
// switch-port flap) is only a warning unless check_carrier=true; and that
// the client's monitor fails once its process is killed.
func TestIronbladeAgentMonitor(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 64<<20)
	tgt := p.targetAgent(t)
	tgt.must(t, "start", ocfSuccess)
	tgt.must(t, "monitor", ocfSuccess)

	testenv.Run(t, p.target, "ip", "link", "set", p.veth.IfA, "down")
	out := tgt.must(t, "monitor", ocfErrGeneric)
	if !strings.Contains(out, "does not serve") {
		t.Errorf("monitor with the interface down says %q, want why it does not serve", out)
	}
	testenv.Run(t, p.target, "ip", "link", "set", p.veth.IfA, "up")
	testenv.WaitLinkReady(t, p.target, p.veth.IfA)
	tgt.must(t, "monitor", ocfSuccess)

	// The peer down: netif stays up, its AoE socket running, no carrier.
	testenv.Run(t, p.client, "ip", "link", "set", p.veth.IfB, "down")
	testenv.WaitFor(t, 5*time.Second, "no carrier on "+p.veth.IfA, func() bool {
		return strings.TrimSpace(testenv.Run(t, p.target, "cat", "/sys/class/net/"+p.veth.IfA+"/carrier")) == "0"
	})
	out = tgt.must(t, "monitor", ocfSuccess)
	if !strings.Contains(out, "no carrier") {
		t.Errorf("monitor without carrier says %q, want a warning about the carrier", out)
	}
	tgt.params["check_carrier"] = "true"
	out = tgt.must(t, "monitor", ocfErrGeneric)
	if !strings.Contains(out, "no carrier") {
		t.Errorf("monitor with check_carrier=true and no carrier says %q, want why it does not serve", out)
	}
	delete(tgt.params, "check_carrier")
	testenv.Run(t, p.client, "ip", "link", "set", p.veth.IfB, "up")
	testenv.WaitLinkReady(t, p.target, p.veth.IfA)
	testenv.WaitLinkReady(t, p.client, p.veth.IfB)
	tgt.must(t, "monitor", ocfSuccess)

	cli := p.clientAgent(t, "serve")
	cli.must(t, "start", ocfSuccess)
	cli.must(t, "monitor", ocfSuccess)
	if err := syscall.Kill(cli.pid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitMonitor(t, cli, ocfNotRunning)

	if err := syscall.Kill(tgt.pid(t), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitMonitor(t, tgt, ocfNotRunning)
	tgt.must(t, "stop", ocfSuccess)
	tgt.must(t, "start", ocfSuccess)
}

// waitMonitor waits until the agent's monitor returns want: a killed
// process takes a moment to be gone.
func waitMonitor(t *testing.T, a *agent, want int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%s monitor to return %d", a.name, want), func() bool {
		rc, _ := a.run(t, "monitor")
		return rc == want
	})
}

// TestAgentsRefuseBadConfiguration checks the exit codes of start and
// validate-all: a file missing on this node is OCF_ERR_INSTALLED (another
// node may have it), a wrong parameter OCF_ERR_CONFIGURED (wrong on every
// node), and a probe of a resource that cannot run here is not running.
func TestAgentsRefuseBadConfiguration(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 1<<20)
	cases := []struct {
		name, key, value string
		want             int
	}{
		{"missing file", "file", filepath.Join(p.dir, "no-such-disk"), ocfErrInstalled},
		{"missing binary", "binary", filepath.Join(p.dir, "no-such-ironblade"), ocfErrInstalled},
		{"missing interface", "netif", "nosuchif0", ocfErrInstalled},
		{"shelf out of range", "shelf", "65535", ocfErrConfigured},
		{"bad sync", "sync", "maybe", ocfErrConfigured},
		{"option ironblade refuses", "options", "--workers=zero", ocfErrConfigured},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tgt := p.targetAgent(t)
			tgt.params[c.key] = c.value
			if rc, out := tgt.run(t, "start"); rc != c.want {
				t.Errorf("start: exit %d, want %d\n%s", rc, c.want, out)
			}
			tgt.must(t, "monitor", ocfNotRunning)
		})
	}

	cli := p.clientAgent(t, "serve")
	cli.params["device"] = "1.2"
	if rc, out := cli.run(t, "validate-all"); rc != ocfErrConfigured {
		t.Errorf("ironaoe validate-all with device 1.2: exit %d, want %d\n%s", rc, ocfErrConfigured, out)
	}
	// Monitor matches the device literally in ironaoe stat's output: only
	// the one spelling ironaoe prints, with no room for a pattern.
	for _, dev := range []string{"e01.2", "e1.02", "e1.255", "e65535.0", "e1.*", "e1.2.3"} {
		cli.params["device"] = dev
		if rc, out := cli.run(t, "validate-all"); rc != ocfErrConfigured {
			t.Errorf("ironaoe validate-all with device %s: exit %d, want %d\n%s", dev, rc, ocfErrConfigured, out)
		}
	}
	cli.params["device"], cli.params["mode"] = "e1.2", "mirror"
	if rc, out := cli.run(t, "validate-all"); rc != ocfErrConfigured {
		t.Errorf("ironaoe validate-all with mode mirror: exit %d, want %d\n%s", rc, ocfErrConfigured, out)
	}
}

// TestIronbladeAgentStopUnderWriteLoad stops the target while 16 writers
// keep its window full through ironaoe serve: stop must return success,
// well within its operation timeout, with the process gone. Then it stops
// a target that cannot react to SIGTERM (stopped with SIGSTOP): stop must
// SIGKILL it after stop_timeout and still return success in time.
func TestIronbladeAgentStopUnderWriteLoad(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 256<<20)
	tgt := p.targetAgent(t)
	tgt.must(t, "start", ocfSuccess)
	cli := p.clientAgent(t, "serve")
	// Once the target is gone, I/O fails after 2 s instead of 3 min, so
	// that the client and the load stop quickly at the end.
	cli.params["options"] = "--dead-timeout 2s"
	cli.must(t, "start", ocfSuccess)

	written := writeLoad(t, cli.params["unix_socket"], 16)
	testenv.WaitFor(t, 10*time.Second, "writes to flow", func() bool { return written.Load() >= 64 })
	pid := tgt.pid(t)
	start := time.Now()
	tgt.must(t, "stop", ocfSuccess)
	took := time.Since(start)
	t.Logf("stop under write load (%d writes of 64 KiB done): %v", written.Load(), took)
	if took > opTimeout/2 {
		t.Errorf("stop under write load took %v, want well under the %v operation timeout", took, opTimeout)
	}
	if syscall.Kill(pid, 0) == nil && !zombie(pid) {
		t.Errorf("ironblade (pid %d) still runs after stop", pid)
	}
	if !strings.Contains(readFile(tgt.params["logfile"]), "msg=stopped") {
		t.Errorf("ironblade did not log a clean stop:\n%s", readFile(tgt.params["logfile"]))
	}

	tgt.must(t, "start", ocfSuccess)
	pid = tgt.pid(t)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	tgt.params["stop_timeout"] = "1"
	start = time.Now()
	out := tgt.must(t, "stop", ocfSuccess)
	took = time.Since(start)
	t.Logf("stop of a target deaf to SIGTERM with stop_timeout=1: %v", took)
	if took < time.Second || took > 5*time.Second {
		t.Errorf("stop of a stopped target took %v, want SIGKILL after stop_timeout (1s)", took)
	}
	if !strings.Contains(out, "SIGKILL") {
		t.Errorf("stop of a stopped target does not say it used SIGKILL:\n%s", out)
	}
	if syscall.Kill(pid, 0) == nil && !zombie(pid) {
		t.Errorf("ironblade (pid %d) still runs after stop", pid)
	}
}

// zombie reports whether pid has exited and awaits its parent.
func zombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// writeLoad keeps writers goroutines writing 64 KiB blocks through the NBD
// export e1.2 on the Unix socket until the test ends (errors once the
// target stops are expected and ignored), and counts the writes done.
func writeLoad(t *testing.T, socket string, writers int) *atomic.Int64 {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var written atomic.Int64
	var wg sync.WaitGroup
	client, err := nbd.Dial(ctx, "unix", socket, nbd.ClientConfig{Export: "e1.2"})
	if err != nil {
		cancel()
		t.Fatalf("NBD client: %v", err)
	}
	block := make([]byte, 64<<10)
	span := client.Size() / int64(len(block))
	for w := range writers {
		wg.Go(func() {
			for i := int64(w); ctx.Err() == nil; i += int64(writers) {
				if err := client.WriteAt(ctx, block, (i%span)*int64(len(block)), false); err != nil {
					return
				}
				written.Add(1)
			}
		})
	}
	t.Cleanup(func() {
		cancel()
		client.Close()
		wg.Wait()
	})
	return &written
}

// TestAgentsWithoutShellFuncs runs the target agent's actions on a node
// without resource-agents' ocf-shellfuncs: Pacemaker alone must do.
func TestAgentsWithoutShellFuncs(t *testing.T) {
	requireOCF(t)
	p := newPair(t, 64<<20)
	tgt := p.targetAgent(t)
	noLib := "OCF_FUNCTIONS_DIR=" + filepath.Join(p.dir, "no-such-lib")
	for _, step := range []struct {
		action string
		want   int
	}{
		{"meta-data", ocfSuccess}, {"validate-all", ocfSuccess}, {"monitor", ocfNotRunning},
		{"start", ocfSuccess}, {"monitor", ocfSuccess}, {"reload-agent", ocfSuccess}, {"reload", ocfSuccess},
		{"stop", ocfSuccess}, {"monitor", ocfNotRunning},
	} {
		if rc, out := tgt.run(t, step.action, noLib); rc != step.want {
			t.Fatalf("%s without ocf-shellfuncs: exit %d, want %d\n%s", step.action, rc, step.want, out)
		}
	}
	cli := p.clientAgent(t, "serve")
	if rc, out := cli.run(t, "validate-all", noLib); rc != ocfSuccess {
		t.Fatalf("ironaoe validate-all without ocf-shellfuncs: exit %d\n%s", rc, out)
	}
}
