package exportconf

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/crypto/seal"
)

const good = `# two exports sharing the defaults
[defaults]
interfaces = ["eth0"]
sync = true
state-dir = "/var/lib/ironblade"

[export.data]
file = "/dev/vg0/data"
shelf = 1
slot = 0
allowed-macs = ["00:11:22:33:44:55", "002233445566"]
auth-keys = ["/etc/ironblade/data.key"]
auth-mode = "optional"

[export.logs]
file = "/srv/logs.img"
shelf = 1
slot = 1
interfaces = ["eth0", "eth1"]
sync = false
read-only = true
direct = true
buffers = 16
offset = 8
length = 2048
workers = 4
vlan = 42
announce-interval = "30s"
`

func TestParseGood(t *testing.T) {
	c, err := Parse("good.conf", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Exports) != 2 {
		t.Fatalf("%d exports, want 2", len(c.Exports))
	}
	data, logs := c.Exports[0], c.Exports[1]
	want := Export{Name: "data", File: "/dev/vg0/data", Shelf: 1, Slot: 0, Interfaces: []string{"eth0"},
		Buffers: DefaultBuffers, Sync: true, StateDir: "/var/lib/ironblade",
		AllowedMACs: []aoe.MAC{{0, 0x11, 0x22, 0x33, 0x44, 0x55}, {0, 0x22, 0x33, 0x44, 0x55, 0x66}},
		AuthKeys:    []string{"/etc/ironblade/data.key"}, AuthMode: seal.ModeOptional}
	if !data.Equal(want) {
		t.Errorf("data:\n got %+v\nwant %+v", data, want)
	}
	want = Export{Name: "logs", File: "/srv/logs.img", Shelf: 1, Slot: 1, Interfaces: []string{"eth0", "eth1"},
		Buffers: 16, Offset: 8, Length: 2048, Direct: true, ReadOnly: true, StateDir: "/var/lib/ironblade",
		AnnounceInterval: 30 * time.Second, Workers: 4, VLAN: 42}
	if !logs.Equal(want) {
		t.Errorf("logs:\n got %+v\nwant %+v", logs, want)
	}
}

// TestParseBad checks that each mistake is refused with an error naming
// the file, the line of the key at fault and what is wrong.
func TestParseBad(t *testing.T) {
	const head = "[defaults]\ninterfaces = [\"eth0\"]\n\n[export.a]\nfile = \"/a\"\nshelf = 1\nslot = 0\n" // lines 1-7
	tests := []struct {
		name, conf string
		line       int
		want       string
	}{
		{"syntax", head + "sync = yes\n", 8, "expected value"},
		{"unknown key", head + "sink = true\n", 8, `unknown key "sink" in [export.a]`},
		{"unknown key in defaults", "[defaults]\n\nsyncc = true\n" + strings.TrimPrefix(head, "[defaults]\n"), 3, `unknown key "syncc" in [defaults]`},
		{"unknown table", head + "\n[exports.b]\nfile = \"/b\"\n", 9, `unknown key or table "exports"`},
		{"unknown top-level key", "verbose = true\n" + head, 1, `unknown key or table "verbose"`},
		{"export not a table", "export = 3\n", 1, "export: want [export.NAME] tables"},
		{"export key not a table", head + "\n[export]\nb = 1\n", 10, "export.b: type mismatch for exportconf.fields: expected table"},
		{"duplicate shelf.slot", head + "\n[export.b]\nfile = \"/b\"\nshelf = 1\nslot = 0\n", 11, "e1.0 is already exported by [export.a] (line 4)"},
		{"duplicate TOML key", head + "shelf = 2\n", 8, "shelf"},
		{"wrong type", head + "sync = \"yes\"\n", 8, "export.a.sync: TOML value has type string; destination has type boolean"},
		{"no file", "[defaults]\ninterfaces = [\"eth0\"]\n[export.a]\nshelf = 1\nslot = 0\n", 3, "no file"},
		{"file in defaults", "[defaults]\nfile = \"/x\"\n" + strings.TrimPrefix(head, "[defaults]\n"), 2, "belongs in an [export.NAME] table"},
		{"no slot", "[export.a]\nfile = \"/a\"\nshelf = 1\ninterfaces = [\"eth0\"]\n", 1, "set both shelf and slot"},
		{"broadcast shelf", "[export.a]\nfile = \"/a\"\ninterfaces = [\"eth0\"]\nslot = 0\nshelf = 65535\n", 5, "want 0 to 65534"},
		{"broadcast slot", "[export.a]\nfile = \"/a\"\ninterfaces = [\"eth0\"]\nshelf = 0\nslot = 255\n", 5, "want 0 to 254"},
		{"no interfaces", "[export.a]\nfile = \"/a\"\nshelf = 1\nslot = 0\n", 1, "no interfaces"},
		{"repeated interface", head + "interfaces = [\"eth1\", \"eth1\"]\n", 8, "repeated interface"},
		{"bad default interface", "[defaults]\ninterfaces = [\"\"]\n" + strings.TrimPrefix(head, "[defaults]\ninterfaces = [\"eth0\"]\n"), 2, "empty or repeated"},
		{"one buffer", head + "buffers = 1\n", 8, "want 2 to"},
		{"negative offset", head + "offset = -1\n", 8, "0 or more"},
		{"zero length", head + "length = 0\n", 8, "1 or more"},
		{"negative workers", head + "workers = -1\n", 8, "want 1 to"},
		{"VLAN 4095", head + "vlan = 4095\n", 8, "VLAN ID from 1 to 4094"},
		{"bad MAC", head + "allowed-macs = [\"00:11:22\"]\n", 8, `"00:11:22"`},
		{"group MAC", head + "allowed-macs = [\"01:00:5e:00:00:01\"]\n", 8, "group or zero address"},
		{"empty MAC list", head + "allowed-macs = []\n", 8, "empty list"},
		{"bad duration", head + "announce-interval = \"often\"\n", 8, "want a duration"},
		{"auth-mode without key", head + "auth-mode = \"optional\"\n", 8, "needs auth-keys"},
		{"bad auth-mode", head + "auth-keys = [\"/k\"]\nauth-mode = \"maybe\"\n", 9, "want required or optional"},
		{"auth-encrypt without key", head + "auth-encrypt = true\n", 8, "needs auth-keys"},
		{"empty state-dir", head + "state-dir = \"\"\n", 8, "empty directory name"},
		{"no exports", "[defaults]\nsync = true\n", 0, "no exports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.conf", []byte(tt.conf))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: %v, want an *Error", err)
			}
			if ce.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse:\n%s\n→ %q (line %d); want line %d and %q", tt.conf, err, ce.Line, tt.line, tt.want)
			}
			prefix := "x.conf: "
			if tt.line != 0 {
				prefix = "x.conf:" + itoa(tt.line) + ": "
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
		})
	}
}

func itoa(n int) string {
	b := []byte{}
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestLoadMissingFile checks that a file that does not exist is named at
// the line of its file key.
func TestLoadMissingFile(t *testing.T) {
	dir := t.TempDir()
	present := filepath.Join(dir, "present.img")
	if err := os.WriteFile(present, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.img")
	conf := filepath.Join(dir, "ironblade.conf")
	text := "[defaults]\ninterfaces = [\"eth0\"]\n\n[export.a]\nfile = \"" + present + "\"\nshelf = 1\nslot = 0\n\n" +
		"[export.b]\nshelf = 1\nslot = 1\nfile = \"" + missing + "\"\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(conf)
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 12 || !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), conf+":12: [export.b] file:") {
		t.Errorf("Load: %v; want %s:12 naming the missing file", err, conf)
	}
	if _, err := Load(filepath.Join(dir, "none.conf")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load of a missing config: %v", err)
	}
}

// TestKeyLine checks the key locator on the forms TOML has for a key.
func TestKeyLine(t *testing.T) {
	doc := "a = 1\n[t]\n  b = 2\n\"quoted key\" = 3\n[t.u]\nc = 4\n[export.\"x.y\"]\nd = 5\ne.f = 6\n"
	for _, tt := range []struct {
		key  []string
		line int
	}{
		{[]string{"a"}, 1}, {[]string{"t"}, 2}, {[]string{"t", "b"}, 3}, {[]string{"t", "quoted key"}, 4},
		{[]string{"t", "u"}, 5}, {[]string{"t", "u", "c"}, 6}, {[]string{"export", "x.y", "d"}, 8},
		{[]string{"export", "x.y", "e", "f"}, 9}, {[]string{"nothing"}, 0}, {nil, 0},
	} {
		if got := keyLine([]byte(doc), tt.key); got != tt.line {
			t.Errorf("keyLine(%q) = %d, want %d", tt.key, got, tt.line)
		}
	}
}

// FuzzParse checks that Parse never panics, and that every error it
// returns is an *Error with a line within the file.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("[export.a]\nfile = \"/a\"\nshelf = 1\nslot = 0\ninterfaces = [\"eth0\"]\n"))
	f.Add([]byte("[export.a]\nfile = \"/a\"\nshelf = 1\nslot = 0\n[export.b]\nfile=\"/b\"\nshelf=1\nslot=0\n"))
	f.Add([]byte("export = 3\n[defaults]\nbogus = [1, {a = 2}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("f.conf", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if ce.Line < 0 || ce.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("error at line %d of a %d-line file: %v", ce.Line, strings.Count(string(data), "\n")+1, err)
			}
			return
		}
		if len(c.Exports) == 0 {
			t.Fatal("no error and no export")
		}
		for _, e := range c.Exports {
			if e.File == "" || len(e.Interfaces) == 0 || e.Shelf == aoe.BroadcastMajor || e.Slot == aoe.BroadcastMinor {
				t.Fatalf("accepted an unusable export %+v", e)
			}
		}
	})
}
