package nbd

import (
	"bytes"
	"crypto/rand"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/initiator/nbd/nbdtest"
)

// These tests drive the server with real NBD clients: nbdinfo and nbdcopy
// (libnbd-bin), qemu-img and qemu-io (qemu-utils).

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (apt-get install libnbd-bin qemu-utils): %v", name, err)
	}
}

// peerSetup serves "mem" (memory), "ro" (read-only memory) and "file" (a
// sparse file, no ZeroWriter) on a Unix socket and on TCP 127.0.0.1.
type peerSetup struct {
	mem    *nbdtest.Memory
	socket string
	tcp    string
}

func newPeerSetup(t *testing.T, size int64) *peerSetup {
	t.Helper()
	mem := nbdtest.NewMemory(size)
	path := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	file, err := nbdtest.OpenFile(path, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { file.Close() })

	var ex ExportMap
	ex.Add("mem", "memory disk", mem)
	ex.Add("ro", "read-only disk", nbdtest.NewReadOnlyMemory(bytes.Repeat([]byte{0x11}, 1<<20)))
	ex.Add("file", "", file)
	p := &peerSetup{mem: mem, socket: serveUnix(t, &Server{Exports: &ex})}
	l, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, &Server{Exports: &ex}, l)
	p.tcp = l.Addr().(*net.TCPAddr).String()
	return p
}

func (p *peerSetup) unixURI(export string) string {
	return "nbd+unix:///" + export + "?socket=" + p.socket
}

func (p *peerSetup) tcpURI(export string) string {
	return "nbd://" + p.tcp + "/" + export
}

// run runs a command with a timeout and returns its combined output.
func run(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := contextWithTimeout(t, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

type nbdinfoExport struct {
	Name         string `json:"export-name"`
	Description  string `json:"description"`
	Size         int64  `json:"export-size"`
	ReadOnly     bool   `json:"is_read_only"`
	CanFlush     bool   `json:"can_flush"`
	CanFUA       bool   `json:"can_fua"`
	CanTrim      bool   `json:"can_trim"`
	CanZero      bool   `json:"can_zero"`
	CanMultiConn bool   `json:"can_multi_conn"`
	CanDF        bool   `json:"can_df"`
	MinBlock     uint32 `json:"block_size_minimum"`
	PrefBlock    uint32 `json:"block_size_preferred"`
	MaxBlock     uint32 `json:"block_size_maximum"`
}

type nbdinfoOutput struct {
	Protocol   string          `json:"protocol"`
	Structured bool            `json:"structured"`
	Exports    []nbdinfoExport `json:"exports"`
}

func nbdinfo(t *testing.T, args ...string) nbdinfoOutput {
	t.Helper()
	out, err := run(t, "nbdinfo", append([]string{"--json"}, args...)...)
	if err != nil {
		t.Fatalf("nbdinfo %v: %v\n%s", args, err, out)
	}
	var info nbdinfoOutput
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		t.Fatalf("nbdinfo output: %v\n%s", err, out)
	}
	return info
}

func TestPeerNbdinfo(t *testing.T) {
	requireTool(t, "nbdinfo")
	p := newPeerSetup(t, 8<<20)
	for _, uri := range []string{p.unixURI("mem"), p.tcpURI("mem")} {
		info := nbdinfo(t, uri)
		if info.Protocol != "newstyle-fixed" || !info.Structured || len(info.Exports) != 1 {
			t.Fatalf("%s: %+v", uri, info)
		}
		e := info.Exports[0]
		want := nbdinfoExport{Name: "mem", Description: "memory disk", Size: 8 << 20, CanFlush: true, CanFUA: true,
			CanTrim: true, CanZero: true, CanMultiConn: true, CanDF: true, MinBlock: 1, PrefBlock: 4096, MaxBlock: 32 << 20}
		if e != want {
			t.Errorf("%s:\n got %+v\nwant %+v", uri, e, want)
		}
	}
	ro := nbdinfo(t, p.unixURI("ro")).Exports[0]
	if !ro.ReadOnly || ro.CanTrim || ro.CanZero || ro.CanFUA || ro.Size != 1<<20 {
		t.Errorf("read-only export: %+v", ro)
	}
	file := nbdinfo(t, p.unixURI("file")).Exports[0]
	if file.ReadOnly || !file.CanTrim || !file.CanZero {
		t.Errorf("file export: %+v", file)
	}
}

func TestPeerNbdinfoList(t *testing.T) {
	requireTool(t, "nbdinfo")
	p := newPeerSetup(t, 1<<20)
	info := nbdinfo(t, "--list", "nbd+unix://?socket="+p.socket)
	var names []string
	for _, e := range info.Exports {
		names = append(names, e.Name+":"+e.Description)
	}
	if got := strings.Join(names, ","); got != "file:,mem:memory disk,ro:read-only disk" {
		t.Fatalf("exports %s", got)
	}
}

func sha512File(t *testing.T, path string) [64]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha512.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [64]byte(h.Sum(nil))
}

func TestPeerNbdcopy(t *testing.T) {
	requireTool(t, "nbdcopy")
	size := int64(64 << 20)
	if testing.Short() {
		size = 8 << 20
	}
	p := newPeerSetup(t, size)
	dir := t.TempDir()
	in := filepath.Join(dir, "in")
	data := make([]byte, size)
	rand.Read(data)
	// Some zero runs, so that nbdcopy also zeroes rather than writes.
	clear(data[size/2 : size/2+4<<20])
	if err := os.WriteFile(in, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := sha512File(t, in)

	for _, tt := range []struct{ name, dst, src string }{
		{"memory unix in, tcp out", p.unixURI("mem"), p.tcpURI("mem")},
		{"file tcp in, unix out", p.tcpURI("file"), p.unixURI("file")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if out, err := run(t, "nbdcopy", "--flush", in, tt.dst); err != nil {
				t.Fatalf("nbdcopy in: %v\n%s", err, out)
			}
			outFile := filepath.Join(dir, "out")
			if out, err := run(t, "nbdcopy", tt.src, outFile); err != nil {
				t.Fatalf("nbdcopy out: %v\n%s", err, out)
			}
			if got := sha512File(t, outFile); got != want {
				t.Fatal("SHA-512 of the copy differs from the original")
			}
		})
	}
	if !bytes.Equal(p.mem.Bytes(), data) {
		t.Fatal("memory export does not hold the copied data")
	}
	if p.mem.Flushes.Load() == 0 {
		t.Error("nbdcopy --flush sent no flush")
	}
}

func TestPeerQemuImgInfo(t *testing.T) {
	requireTool(t, "qemu-img")
	p := newPeerSetup(t, 8<<20)
	for _, uri := range []string{p.unixURI("mem"), p.tcpURI("mem")} {
		out, err := run(t, "qemu-img", "info", "--output=json", uri)
		if err != nil {
			t.Fatalf("qemu-img info %s: %v\n%s", uri, err, out)
		}
		var info struct {
			VirtualSize int64  `json:"virtual-size"`
			Format      string `json:"format"`
		}
		if err := json.Unmarshal([]byte(out), &info); err != nil || info.VirtualSize != 8<<20 || info.Format != "raw" {
			t.Fatalf("qemu-img info %s: %+v %v\n%s", uri, info, err, out)
		}
	}
}

func TestPeerQemuIO(t *testing.T) {
	requireTool(t, "qemu-io")
	p := newPeerSetup(t, 8<<20)
	for i, uri := range []string{p.unixURI("mem"), p.tcpURI("mem")} {
		pattern := fmt.Sprintf("%#x", 0xab+i)
		out, err := run(t, "qemu-io", "-f", "raw",
			"-c", "write -P "+pattern+" 0 1M",
			"-c", "read -P "+pattern+" 0 1M",
			"-c", "write -z 1M 64k",
			"-c", "read -P 0 1M 64k",
			"-c", "flush", uri)
		if err != nil || strings.Contains(out, "fail") || strings.Count(out, "1048576/1048576") != 2 {
			t.Fatalf("qemu-io %s: %v\n%s", uri, err, out)
		}
		if got := p.mem.Bytes(); got[0] != byte(0xab+i) || got[1<<20-1] != byte(0xab+i) {
			t.Fatalf("%s: backend holds %#x", uri, got[0])
		}
	}
	if p.mem.FUAWrites.Load()+p.mem.Flushes.Load() == 0 {
		t.Error("qemu-io flush reached neither Flush nor a FUA write")
	}
}

func TestPeerReadOnly(t *testing.T) {
	requireTool(t, "qemu-io")
	requireTool(t, "nbdcopy")
	p := newPeerSetup(t, 1<<20)
	out, err := run(t, "qemu-io", "-f", "raw", "-c", "write -P 0xab 0 4k", p.unixURI("ro"))
	if err == nil {
		t.Fatalf("qemu-io wrote to a read-only export:\n%s", out)
	}
	out, err = run(t, "qemu-io", "-f", "raw", "-r", "-c", "read -P 0x11 0 1M", p.tcpURI("ro"))
	if err != nil || strings.Contains(out, "fail") {
		t.Fatalf("qemu-io read-only read: %v\n%s", err, out)
	}
	in := filepath.Join(t.TempDir(), "in")
	if err := os.WriteFile(in, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := run(t, "nbdcopy", in, p.unixURI("ro")); err == nil {
		t.Fatalf("nbdcopy wrote to a read-only export:\n%s", out)
	}
	// A client that ignores the flag is refused by the server itself.
	c := dialClient(t, p.socket, ClientConfig{Export: "ro"})
	if err := c.WriteAt(t.Context(), []byte{1}, 0, false); err == nil || !strings.Contains(err.Error(), "EPERM") {
		t.Fatalf("write to read-only export: %v", err)
	}
}
