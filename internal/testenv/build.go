package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// BinaryVersion is the version BuildBinary stamps into what it builds
// (main.version), for tests of --version.
const BinaryVersion = "v0.0.0-e2e"

// buildTimeout bounds one go build.
const buildTimeout = 3 * time.Minute

// built holds what BuildBinary built during RunTests: one build a package.
var built struct {
	mu     sync.Mutex
	active bool   // RunTests is running the tests
	dir    string // where the binaries go, made at the first build
	builds map[string]*build
}

// build is one package's binary, built once.
type build struct {
	once sync.Once
	path string
	err  error
}

// RunTests runs the tests of m, then removes the binaries BuildBinary
// built for them, and exits with the tests' status. Call it from the
// TestMain of a package whose tests build binaries: under it each package
// is built once per test binary rather than once per test.
//
// It also points RUNTIME_DIRECTORY, which the processes the tests start
// inherit, at a directory of its own, removed at the end: ironblade puts
// its control socket there rather than in the host's /run/ironblade,
// where a target a test kills would leave it.
func RunTests(m *testing.M) {
	built.mu.Lock()
	built.active = true
	built.mu.Unlock()
	runDir, err := os.MkdirTemp("", "testenv-run")
	if err == nil {
		err = os.Setenv("RUNTIME_DIRECTORY", runDir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv: runtime directory:", err)
		os.Exit(1)
	}
	code := m.Run()
	built.mu.Lock()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	built.mu.Unlock()
	os.RemoveAll(runDir)
	os.Exit(code)
}

// BuildBinary compiles the main package pkg, named relative to the module
// root (as "./cmd/ironblade"), with main.version set to BinaryVersion, and
// returns the binary's path. Under RunTests each package is built once and
// kept until the tests end; otherwise it is built into t.TempDir(). It
// skips the test when there is no go command, and fails it when the build
// fails.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	// go test puts its own go first in PATH, but sudo's secure_path may
	// leave it out: fall back to the usual install location.
	goTool, err := exec.LookPath("go")
	if err != nil {
		if goTool, err = exec.LookPath("/usr/local/go/bin/go"); err != nil {
			t.Skipf("testenv: needs the go command to build %s: %v", pkg, err)
		}
	}
	built.mu.Lock()
	if !built.active {
		built.mu.Unlock()
		path, err := buildPackage(goTool, pkg, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	if built.builds == nil {
		built.builds = make(map[string]*build)
	}
	b := built.builds[pkg]
	if b == nil {
		b = new(build)
		built.builds[pkg] = b
	}
	var mkErr error
	if built.dir == "" {
		built.dir, mkErr = os.MkdirTemp("", "testenv-bin")
	}
	dir := built.dir
	built.mu.Unlock()
	if mkErr != nil {
		t.Fatalf("testenv: build %s: %v", pkg, mkErr)
	}
	b.once.Do(func() {
		sub, err := os.MkdirTemp(dir, "pkg")
		if err != nil {
			b.err = fmt.Errorf("testenv: build %s: %w", pkg, err)
			return
		}
		b.path, b.err = buildPackage(goTool, pkg, sub)
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// buildPackage builds pkg, relative to the module root, into dir.
func buildPackage(goTool, pkg, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, goTool, "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("testenv: build %s: go env GOMOD: %v (%q): cannot find the module root", pkg, err, gomod)
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	// -buildvcs=false: a root test in a checkout owned by another user
	// cannot ask git for the VCS stamp.
	cmd := exec.CommandContext(ctx, goTool, "build", "-buildvcs=false",
		"-ldflags", "-X main.version="+BinaryVersion, "-o", bin, pkg)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("testenv: go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}
