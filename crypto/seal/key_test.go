package seal_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ironblade/ironblade/crypto/seal"
)

// writeKeyFile writes b to a new file in a test directory with mode perm
// (set with chmod, whatever the umask) and returns its path.
func writeKeyFile(t *testing.T, name string, b []byte, perm os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func randomSecret(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestLoadKeyFile(t *testing.T) {
	secret := randomSecret(32)
	tests := []struct {
		name    string
		content []byte
		perm    os.FileMode
		exposed bool     // the error wraps ErrKeyExposed
		want    []string // the error mentions each; nil: the key loads
	}{
		{name: "32 bytes 0600", content: secret, perm: 0o600},
		{name: "owner read only 0400", content: secret, perm: 0o400},
		{name: "owner rwx 0700", content: secret, perm: 0o700},
		{name: "shortest key, 16 bytes", content: secret[:seal.MinKeyLen], perm: 0o600},
		{name: "longest key", content: bytes.Repeat(secret, seal.MaxKeyLen/32), perm: 0o600},
		{name: "group readable 0640", content: secret, perm: 0o640, exposed: true, want: []string{"0640", "chmod 600"}},
		{name: "others readable 0604", content: secret, perm: 0o604, exposed: true, want: []string{"0604", "chmod 600"}},
		{name: "world readable 0644", content: secret, perm: 0o644, exposed: true, want: []string{"0644", "chmod 600"}},
		{name: "group writable 0620", content: secret, perm: 0o620, exposed: true, want: []string{"chmod 600"}},
		{name: "others writable 0602", content: secret, perm: 0o602, exposed: true, want: []string{"chmod 600"}},
		{name: "group executable 0610", content: secret, perm: 0o610, exposed: true, want: []string{"chmod 600"}},
		{name: "8 bytes", content: secret[:8], perm: 0o600, want: []string{"8 bytes", "at least 16", "head -c 32 /dev/urandom"}},
		{name: "15 bytes", content: secret[:15], perm: 0o600, want: []string{"15 bytes", "at least 16"}},
		{name: "empty", content: nil, perm: 0o600, want: []string{"0 bytes", "at least 16"}},
		{name: "too long", content: make([]byte, seal.MaxKeyLen+1), perm: 0o600, want: []string{"4097 bytes", "at most 4096"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeKeyFile(t, "key", tc.content, tc.perm)
			k, err := seal.LoadKeyFile(path)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("LoadKeyFile: %v", err)
				}
				if !k.Valid() || k.Source != path {
					t.Errorf("loaded key %v: valid %v, source %q", k, k.Valid(), k.Source)
				}
				want, err := seal.NewKey(tc.content, "other")
				if err != nil {
					t.Fatal(err)
				}
				if k.ID != want.ID {
					t.Errorf("file key id %08x, NewKey of the same bytes %08x", k.ID, want.ID)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeyFile accepted it: %v", k)
			}
			if k.Valid() {
				t.Errorf("refused key is valid: %v", k)
			}
			if got := errors.Is(err, seal.ErrKeyExposed); got != tc.exposed {
				t.Errorf("errors.Is(err, ErrKeyExposed) = %v, want %v; err: %v", got, tc.exposed, err)
			}
			if tc.exposed {
				var pe *fs.PathError
				if !errors.As(err, &pe) || pe.Path != path {
					t.Errorf("error %v: want an *fs.PathError for %s", err, path)
				}
			}
			for _, w := range append(tc.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadKeyFileNotAFile(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := seal.LoadKeyFile(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v, want an error wrapping fs.ErrNotExist naming the file", err)
	}

	sub := filepath.Join(dir, "keys")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.LoadKeyFile(sub); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: %v, want \"not a regular file\"", err)
	}

	// A symbolic link is followed: the file it names is what counts.
	secret := randomSecret(32)
	private := writeKeyFile(t, "private", secret, 0o600)
	exposed := writeKeyFile(t, "exposed", secret, 0o644)
	for _, tc := range []struct {
		target  string
		exposed bool
	}{{private, false}, {exposed, true}} {
		link := filepath.Join(t.TempDir(), "link")
		if err := os.Symlink(tc.target, link); err != nil {
			t.Fatal(err)
		}
		_, err := seal.LoadKeyFile(link)
		if got := errors.Is(err, seal.ErrKeyExposed); got != tc.exposed || (err != nil) != tc.exposed {
			t.Errorf("link to %s: %v", tc.target, err)
		}
	}
}

func TestKeyID(t *testing.T) {
	a, b := randomSecret(32), randomSecret(32)
	pa := writeKeyFile(t, "a", a, 0o600)
	pa2 := writeKeyFile(t, "a-copy", a, 0o600)
	pb := writeKeyFile(t, "b", b, 0o600)
	load := func(p string) seal.Key {
		t.Helper()
		k, err := seal.LoadKeyFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ka, ka2, kb := load(pa), load(pa2), load(pb)
	if ka.ID != ka2.ID {
		t.Errorf("same bytes in two files: ids %08x and %08x", ka.ID, ka2.ID)
	}
	if ka.ID == kb.ID {
		t.Errorf("different bytes, same id %08x", ka.ID)
	}
	if ka.Source == ka2.Source {
		t.Errorf("both keys name source %q", ka.Source)
	}
	// One byte apart is a different key.
	c := bytes.Clone(a)
	c[31] ^= 1
	kc, err := seal.NewKey(c, "c")
	if err != nil {
		t.Fatal(err)
	}
	if kc.ID == ka.ID {
		t.Errorf("keys one bit apart share id %08x", ka.ID)
	}
	// NewKey keeps its own copy of the secret.
	d := bytes.Clone(a)
	kd, err := seal.NewKey(d, "d")
	if err != nil {
		t.Fatal(err)
	}
	clear(d)
	kd2, _ := seal.NewKey(a, "d")
	if kd.ID != kd2.ID {
		t.Error("key ids differ for the same bytes")
	}
	var zero seal.Key
	if zero.Valid() {
		t.Error("the zero Key is valid")
	}
}

func TestKeyNeverShowsSecret(t *testing.T) {
	secret := randomSecret(32)
	path := writeKeyFile(t, "key", secret, 0o600)
	k, err := seal.LoadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var logBuf, jsonBuf bytes.Buffer
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("loaded", "key", k, "ptr", &k)
	slog.New(slog.NewJSONHandler(&jsonBuf, nil)).Info("loaded", "key", k)
	js, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"String":  k.String(),
		"%v":      fmt.Sprintf("%v", k),
		"%+v":     fmt.Sprintf("%+v", k),
		"%#v":     fmt.Sprintf("%#v", k),
		"%s":      fmt.Sprintf("%s", k), //lint:ignore S1025 the verb itself is under test
		"%q":      fmt.Sprintf("%q", k),
		"%x":      fmt.Sprintf("%x", k),
		"&%+v":    fmt.Sprintf("%+v", &k),
		"&%#v":    fmt.Sprintf("%#v", &k),
		"slog":    logBuf.String(),
		"slog js": jsonBuf.String(),
		"json":    string(js),
	}
	// The secret in the forms a formatter could print it in.
	forms := []string{
		string(secret),
		hex.EncodeToString(secret),
		hex.EncodeToString(secret[:8]),
		base64.StdEncoding.EncodeToString(secret),
		strings.Trim(fmt.Sprint(secret), "[]"),      // 12 34 56 ...
		fmt.Sprintf("%#v", secret)[len("[]byte{"):], // 0x12, 0x34, ...
		strings.Trim(fmt.Sprintf("%v", secret[:4]), "[]"),
	}
	for how, out := range outputs {
		for _, f := range forms {
			if strings.Contains(out, f) {
				t.Errorf("%s shows the secret: %s", how, out)
				break
			}
		}
	}
	if s := k.String(); !strings.Contains(s, fmt.Sprintf("%08x", k.ID)) || !strings.Contains(s, path) {
		t.Errorf("String() = %q: want the key id and its file", s)
	}
}
