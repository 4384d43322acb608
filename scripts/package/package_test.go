// Package packaging holds the sources of the Debian package, the man pages'
// title and the bash completion (see scripts/package.mk); its test builds
// the package with `make deb`, installs it with dpkg into an empty root
// and checks what it installed.
package packaging

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// repoRoot is the repository, two levels up from this directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatalf("finding the repository: %v", err)
	}
	return root
}

// run runs a command in dir and returns its stdout; it fails the test
// with the command's output if it fails.
func run(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// makeArgs names the makefiles: the Makefile includes scripts/package.mk;
// until it does, both are given.
func makeArgs(t *testing.T, root string) []string {
	t.Helper()
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatalf("reading the Makefile: %v", err)
	}
	if bytes.Contains(mk, []byte("include scripts/package.mk")) {
		return []string{"-f", "Makefile"}
	}
	return []string{"-f", "Makefile", "-f", "scripts/package.mk"}
}

func TestDebInstallsInCleanRoot(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: building the package takes a minute")
	}
	for _, tool := range []string{"make", "dpkg", "dpkg-deb", "gzip", "bash"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found (%v): the Debian package is not checked; install dpkg and make", tool, err)
		}
	}
	root := repoRoot(t)
	mk := makeArgs(t, root)
	// nfpm comes from the module proxy the first time: without a network
	// (and no copy in the module cache) there is nothing to build it with.
	nfpm := exec.Command("make", append(mk, "-s", "--eval", "nfpm-version: ; $(NFPM) --version", "nfpm-version")...)
	nfpm.Dir = root
	if out, err := nfpm.CombinedOutput(); err != nil {
		t.Skipf("nfpm cannot be run (no network or module cache?): the Debian package is not checked: %v\n%s", err, out)
	}

	out := t.TempDir()
	version := strings.TrimSpace(run(t, root, nil, "make", append(mk, "-s", "version")...))
	debVersion := strings.TrimSpace(run(t, root, nil, "sh", "scripts/package/debversion.sh", version))
	deb := filepath.Join(out, "ironblade.deb")
	run(t, root, nil, "make", append(mk, "deb", "PKG_OUT="+out, "PKG_DEB="+deb)...)

	for field, want := range map[string]string{"Package": "ironblade", "Version": debVersion, "Architecture": "amd64"} {
		got := strings.TrimSpace(run(t, root, nil, "dpkg-deb", "--field", deb, field))
		if field == "Architecture" && got != want {
			t.Logf("Architecture %s (not amd64: built on another architecture)", got)
			continue
		}
		if got != want {
			t.Errorf("dpkg-deb --field %s = %q, want %q", field, got, want)
		}
	}
	t.Logf("dpkg-deb --info:\n%s", run(t, root, nil, "dpkg-deb", "--info", deb))

	// An empty root with just dpkg's database: --force-depends as the root
	// has no packages, and no maintainer scripts run (the package has none).
	dir := t.TempDir()
	admin := filepath.Join(dir, "var/lib/dpkg")
	for _, d := range []string{"info", "updates", "triggers"} {
		if err := os.MkdirAll(filepath.Join(admin, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"status", "available"} {
		if err := os.WriteFile(filepath.Join(admin, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	dpkg := []string{"--root=" + dir, "--log=/dev/null", "--force-not-root", "--force-depends"}
	run(t, root, nil, "dpkg", append(dpkg, "-i", deb)...)
	status := run(t, root, nil, "dpkg-query", "--admindir="+admin, "-W", "-f", "${Status} ${Version}", "ironblade")
	if want := "install ok installed " + debVersion; status != want {
		t.Errorf("dpkg-query status %q, want %q", status, want)
	}

	files := []string{
		"usr/sbin/ironblade", "usr/sbin/ironaoe", "usr/sbin/ironbladectl", "usr/bin/ironbench",
		"lib/systemd/system/ironblade@.service", "lib/systemd/system/ironaoe-attach@.service",
		"lib/systemd/system/ironaoe-serve.service", "lib/systemd/system/ironaoe-serve.socket",
		"usr/lib/udev/rules.d/60-ironaoe.rules", "usr/lib/udev/ironaoe-udev-name",
		"usr/lib/ocf/resource.d/ironblade/ironblade", "usr/lib/ocf/resource.d/ironblade/ironaoe",
		"usr/share/man/man8/ironblade.8.gz", "usr/share/man/man8/ironaoe.8.gz", "usr/share/man/man8/ironbladectl.8.gz", "usr/share/man/man5/ironblade.conf.5.gz",
		"usr/share/bash-completion/completions/ironblade", "usr/share/bash-completion/completions/ironaoe",
		"usr/share/bash-completion/completions/ironbench", "usr/share/bash-completion/completions/ironbladectl",
		"usr/share/doc/ironblade/copyright", "usr/share/doc/ironblade/README.md",
		"usr/share/doc/ironblade/ironblade.md", "usr/share/doc/ironblade/examples/ironblade-e1.0.conf",
	}
	for _, f := range files {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("installed package lacks /%s: %v", f, err)
		}
	}

	for _, bin := range []string{"usr/sbin/ironblade", "usr/sbin/ironaoe", "usr/sbin/ironbladectl", "usr/bin/ironbench"} {
		got := run(t, dir, nil, filepath.Join(dir, bin), "--version")
		if want := filepath.Base(bin) + " version " + version; strings.TrimSpace(got) != want {
			t.Errorf("/%s --version printed %q, want %q", bin, got, want)
		}
	}

	// The units name the package's binaries, not make install's default.
	units, _ := filepath.Glob(filepath.Join(dir, "lib/systemd/system/*"))
	for _, u := range units {
		text, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(text, []byte("/usr/local/")) || !bytes.Contains(text, []byte("ExecStart=/usr/sbin/")) &&
			strings.HasSuffix(u, ".service") {
			t.Errorf("%s: ExecStart does not name /usr/sbin (or /usr/local/ is left):\n%s", u, text)
		}
	}

	for _, page := range []string{"ironblade", "ironaoe"} {
		text := gunzip(t, filepath.Join(dir, "usr/share/man/man8", page+".8.gz"))
		want := `.TH ` + strings.ToUpper(page) + ` 8 `
		if !strings.Contains(text, want) || !strings.Contains(text, `"ironblade `+version+`"`) {
			t.Errorf("%s.8: no %q title with the version %s:\n%.300s", page, want, version, text)
		}
		if !strings.Contains(text, ".SH NAME\n"+page+` \- `) || !strings.Contains(text, ".SH SYNOPSIS") {
			t.Errorf("%s.8: no NAME section in whatis form (%s \\- ...) or no SYNOPSIS:\n%.300s", page, page, text)
		}
	}

	// The completion, as installed, completes from the installed binaries.
	script := `source ` + filepath.Join(dir, "usr/share/bash-completion/completions/ironaoe") + `
c() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMPREPLY=(); _${1##*/}; echo "${COMPREPLY[*]}"; }
c ` + filepath.Join(dir, "usr/sbin/ironaoe") + ` se
c ` + filepath.Join(dir, "usr/sbin/ironaoe") + ` serve --un
c ` + filepath.Join(dir, "usr/sbin/ironaoe") + ` --log-level ''
c ` + filepath.Join(dir, "usr/sbin/ironblade") + ` -s --state
c ` + filepath.Join(dir, "usr/bin/ironbench") + ` comp
`
	got := run(t, dir, nil, "bash", "-c", script)
	if want := "serve\n--unix\ndebug info warn error\n--state-dir\ncompare\n"; got != want {
		t.Errorf("completion gave\n%s\nwant\n%s", got, want)
	}

	run(t, root, nil, "dpkg", append(dpkg, "--purge", "ironblade")...)
	for _, f := range files {
		if _, err := os.Lstat(filepath.Join(dir, f)); err == nil {
			t.Errorf("/%s is left after dpkg --purge", f)
		}
	}
}

// gunzip returns the text of a gzip file.
func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	text, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return string(text)
}
