package seal

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
)

// Key lengths, in bytes.
const (
	// MinKeyLen is the shortest key accepted: 128 bits.
	MinKeyLen = 16
	// MaxKeyLen bounds a key file, so that a wrong path (a disk image,
	// say) is refused rather than read.
	MaxKeyLen = 4096
)

// A Key is a pre-shared key. Its ID, a hash of the secret, names it in
// handshakes and logs, so that two keys can be loaded at once while one
// replaces the other. The zero Key is not valid.
type Key struct {
	// ID names the key on the wire and in logs.
	ID uint32
	// Source says where the key came from (its file), for messages.
	Source string
	secret []byte
}

// NewKey makes a Key from secret bytes, at least MinKeyLen of them. The
// Key keeps its own copy.
func NewKey(secret []byte, source string) (Key, error) {
	if len(secret) < MinKeyLen {
		return Key{}, fmt.Errorf("seal: key %s: %d bytes, need at least %d (make one with: head -c 32 /dev/urandom > FILE && chmod 600 FILE)", source, len(secret), MinKeyLen)
	}
	if len(secret) > MaxKeyLen {
		return Key{}, fmt.Errorf("seal: key %s: %d bytes, at most %d", source, len(secret), MaxKeyLen)
	}
	sum := sha256.Sum256(append([]byte("ironblade-aoe key id\x00"), secret...))
	return Key{ID: binary.BigEndian.Uint32(sum[:4]), Source: source, secret: append([]byte(nil), secret...)}, nil
}

// LoadKeyFile reads a key file: the key is the file's bytes, as written by
// `head -c 32 /dev/urandom > FILE`. A file that its group or others may
// read or write is refused, like ssh refuses such a private key.
func LoadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("seal: key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("seal: key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Key{}, fmt.Errorf("seal: key file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, &fs.PathError{Op: "seal: key file", Path: path,
			Err: fmt.Errorf("permissions %04o let group or others at it: %w (run: chmod 600 %s)", perm, ErrKeyExposed, path)}
	}
	if st.Size() > MaxKeyLen {
		return Key{}, fmt.Errorf("seal: key file %s: %d bytes, at most %d", path, st.Size(), MaxKeyLen)
	}
	b := make([]byte, MaxKeyLen+1)
	n, err := f.ReadAt(b, 0)
	if n == 0 && err != nil && err != io.EOF { // an empty file is a key too short
		return Key{}, fmt.Errorf("seal: key file: read %s: %w", path, err)
	}
	return NewKey(b[:n], path)
}

// ErrKeyExposed is wrapped by LoadKeyFile when a key file's permissions let
// others than its owner read or write it.
var ErrKeyExposed = errors.New("key file is not private")

// String names the key by id and source, never by its bytes.
func (k Key) String() string { return fmt.Sprintf("key %08x (%s)", k.ID, k.Source) }

// GoString is String for %#v, which would otherwise print the secret.
func (k Key) GoString() string { return fmt.Sprintf("seal.Key{ID:%#08x, Source:%q}", k.ID, k.Source) }

// Valid reports whether k holds a secret.
func (k Key) Valid() bool { return len(k.secret) > 0 }

// deviceKey derives the key of one device from k, binding shelf.slot, so
// that one file can serve several exports and a proof for one device is no
// proof for another.
func (k Key) deviceKey(shelf uint16, slot uint8) [32]byte {
	var info [len("ironblade-aoe device key") + 3]byte
	n := copy(info[:], "ironblade-aoe device key")
	binary.BigEndian.PutUint16(info[n:], shelf)
	info[n+2] = slot
	out, err := hkdf.Key(sha256.New, k.secret, []byte("ironblade-aoe v1"), string(info[:]), 32)
	if err != nil {
		panic("seal: hkdf: " + err.Error()) // only for lengths beyond 255*32
	}
	return [32]byte(out)
}

// DeviceAddr names a device: its shelf and slot.
type DeviceAddr struct {
	Shelf uint16
	Slot  uint8
}

func (a DeviceAddr) String() string { return fmt.Sprintf("e%d.%d", a.Shelf, a.Slot) }

// matches reports whether a frame addressed to shelf.slot (broadcast
// values included) reaches a.
func (a DeviceAddr) matches(shelf uint16, slot uint8) bool {
	return (shelf == a.Shelf || shelf == 0xffff) && (slot == a.Slot || slot == 0xff)
}
