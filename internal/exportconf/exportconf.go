// Package exportconf reads ironblade's configuration file: the exports one
// ironblade process serves (ironblade --config FILE), in the spirit of
// ggaoed's configuration file, written in TOML. docs/ironblade.conf.md is
// its reference:
//
//	[defaults]
//	interfaces = ["eth0"]
//	sync = true
//
//	[export.data]
//	file = "/dev/vg0/data"
//	shelf = 1
//	slot = 0
//	allowed-macs = ["00:11:22:33:44:55"]
//
// Every error, of syntax or of meaning (an unknown key, a duplicate
// shelf.slot, a file that does not exist), names the file and line.
package exportconf

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/ironblade/ironblade/aoe"
	"github.com/ironblade/ironblade/aoe/rawlink"
	"github.com/ironblade/ironblade/crypto/seal"
	"github.com/ironblade/ironblade/target"
)

// Limits of the values, as on ironblade's command line.
const (
	// DefaultBuffers is the buffer count advertised when none is set.
	DefaultBuffers = 64
	// MinBuffers is the least: the Linux aoe driver gives a target that
	// advertises fewer a window of 0.
	MinBuffers = 2
	// MaxBuffers is the most buffers a target holds.
	MaxBuffers = target.MaxBufferCount
	// MaxMACs is the most entries of a MAC mask list.
	MaxMACs = target.MaxMACMask
	// MaxVLAN is the largest 802.1Q VLAN ID.
	MaxVLAN   = rawlink.MaxVLAN
	maxShelf  = aoe.BroadcastMajor - 1
	maxSlot   = aoe.BroadcastMinor - 1
	maxSector = 1<<63/aoe.SectorSize - 1
)

// Export is one exported device: what ironblade's command line says for
// one process, with a list of interfaces instead of one.
type Export struct {
	// Name is the table's name: [export.NAME].
	Name  string
	File  string
	Shelf uint16
	Slot  uint8
	// Interfaces are the network interfaces it is served on; at least one.
	Interfaces []string
	// Buffers is the advertised buffer count (-b).
	Buffers int
	// Offset and Length select the exported sectors (-o, -l); Length 0
	// is to the end of the file.
	Offset, Length int64
	Direct         bool // -d
	Sync           bool // -s
	ReadOnly       bool // -r
	// AllowedMACs is the MAC mask list (-m); empty serves everyone.
	AllowedMACs      []aoe.MAC
	StateDir         string
	AnnounceInterval time.Duration
	Workers          int
	VLAN             uint16
	// AuthKeys are key files (--auth-key); with any the export is keyed.
	AuthKeys    []string
	AuthMode    seal.Mode
	AuthEncrypt bool
}

// Config is a parsed configuration file.
type Config struct {
	// Exports are sorted by name.
	Exports []Export
}

// Error is a mistake in a configuration file, at a line (0 when the
// mistake is the file as a whole).
type Error struct {
	File string
	Line int
	Msg  string
	Err  error // the cause, if any
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and parses the file at path, and checks that each export's
// file exists.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	if err := c.checkFiles(path, data, os.Stat); err != nil {
		return nil, err
	}
	return c, nil
}

// fields are the keys of an export's table and of [defaults]. Pointers
// tell a key left out (the default applies) from one set to its zero.
type fields struct {
	File             *string   `toml:"file"`
	Shelf            *int64    `toml:"shelf"`
	Slot             *int64    `toml:"slot"`
	Interfaces       *[]string `toml:"interfaces"`
	Buffers          *int64    `toml:"buffers"`
	Offset           *int64    `toml:"offset"`
	Length           *int64    `toml:"length"`
	Direct           *bool     `toml:"direct"`
	Sync             *bool     `toml:"sync"`
	ReadOnly         *bool     `toml:"read-only"`
	AllowedMACs      *[]string `toml:"allowed-macs"`
	StateDir         *string   `toml:"state-dir"`
	AnnounceInterval *string   `toml:"announce-interval"`
	Workers          *int64    `toml:"workers"`
	VLAN             *int64    `toml:"vlan"`
	AuthKeys         *[]string `toml:"auth-keys"`
	AuthMode         *string   `toml:"auth-mode"`
	AuthEncrypt      *bool     `toml:"auth-encrypt"`
}

// document is the whole file.
type document struct {
	Defaults fields            `toml:"defaults"`
	Export   map[string]fields `toml:"export"`
}

// perExport are the keys [defaults] may not hold: they name one device.
var perExport = []string{"file", "shelf", "slot"}

// Parse parses a configuration file's content; name is the file's name
// for the errors. It does not look at the files the exports name (Load
// does).
func Parse(name string, data []byte) (*Config, error) {
	var doc document
	md, err := toml.Decode(string(data), &doc)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{File: name, Line: pe.Position.Line, Msg: pe.Message, Err: err}
		}
		return nil, typeError(name, err)
	}
	p := parser{name: name, data: data}
	if und := md.Undecoded(); len(und) > 0 {
		// The outermost first: an unknown table rather than its keys.
		return nil, p.unknownKey(slices.MinFunc(und, func(a, b toml.Key) int { return len(a) - len(b) }))
	}
	if t := md.Type("export"); t != "" && t != "Hash" {
		return nil, p.errAt(toml.Key{"export"}, "export: want [export.NAME] tables")
	}
	for _, k := range perExport {
		if md.IsDefined("defaults", k) {
			return nil, p.errAt(toml.Key{"defaults", k}, "%s: belongs in an [export.NAME] table, not in [defaults]", k)
		}
	}
	if len(doc.Export) == 0 {
		return nil, p.errAt(nil, "no exports: add an [export.NAME] table")
	}
	c := &Config{}
	for _, n := range slices.Sorted(maps.Keys(doc.Export)) {
		e, err := p.export(n, merge(doc.Defaults, doc.Export[n]))
		if err != nil {
			return nil, err
		}
		c.Exports = append(c.Exports, e)
	}
	if err := p.checkDuplicates(c); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeError matches the errors BurntSushi/toml returns, not as a
// ParseError, for a value of the wrong type.
var decodeError = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*)"\): (.*)$`)

// typeError turns an error of toml.Decode that is not a ParseError into
// an Error, at the line it names.
func typeError(name string, err error) *Error {
	m := decodeError.FindStringSubmatch(err.Error())
	if m == nil {
		return &Error{File: name, Msg: err.Error(), Err: err}
	}
	line, _ := strconv.Atoi(m[1])
	return &Error{File: name, Line: line, Msg: m[2] + ": " + strings.TrimPrefix(m[3], "incompatible types: "), Err: err}
}

// merge returns the export's fields, with those it leaves out taken from
// the defaults.
func merge(defaults, export fields) fields {
	d, e := reflect.ValueOf(defaults), reflect.ValueOf(&export).Elem()
	for i := range e.NumField() {
		if e.Field(i).IsNil() {
			e.Field(i).Set(d.Field(i))
		}
	}
	return export
}

// parser turns the decoded tables into Exports, with errors that name
// the line of the key at fault.
type parser struct {
	name string
	data []byte
}

// errAt returns an Error at the line of key (or of the file, if key is
// nil or cannot be found).
func (p parser) errAt(key toml.Key, format string, args ...any) *Error {
	return &Error{File: p.name, Line: keyLine(p.data, key), Msg: fmt.Sprintf(format, args...)}
}

// unknownKey is the error for a key nothing reads.
func (p parser) unknownKey(k toml.Key) *Error {
	switch {
	case k[0] != "defaults" && k[0] != "export":
		return p.errAt(k, "unknown key or table %q: want [defaults] or [export.NAME] tables", k[0])
	case k[0] == "export" && len(k) == 2:
		return p.errAt(k, "%q: an export must be a table, [export.%s]", k.String(), k[1])
	}
	return p.errAt(k, "unknown key %q in [%s]", k[len(k)-1], strings.Join(k[:len(k)-1], "."))
}

// keyOf is the path of an export's key, or of the defaults' key the value
// came from when the export leaves it out.
func (p parser) keyOf(name, key string) toml.Key {
	k := toml.Key{"export", name, key}
	if keyLine(p.data, k) == 0 && keyLine(p.data, toml.Key{"defaults", key}) != 0 {
		return toml.Key{"defaults", key}
	}
	return k
}

// export checks one export's fields.
func (p parser) export(name string, f fields) (Export, error) {
	e := Export{Name: name, Buffers: DefaultBuffers}
	table := toml.Key{"export", name}
	bad := func(key, format string, args ...any) error {
		return p.errAt(p.keyOf(name, key), "[export.%s] %s: "+format, append([]any{name, key}, args...)...)
	}
	if f.File == nil || *f.File == "" {
		return e, p.errAt(table, "[export.%s]: no file: set file = \"/path/to/file-or-device\"", name)
	}
	e.File = *f.File
	if f.Shelf == nil || f.Slot == nil {
		return e, p.errAt(table, "[export.%s]: set both shelf and slot", name)
	}
	if *f.Shelf < 0 || *f.Shelf > maxShelf {
		return e, bad("shelf", "%d: want 0 to %d (%d addresses every shelf)", *f.Shelf, maxShelf, aoe.BroadcastMajor)
	}
	if *f.Slot < 0 || *f.Slot > maxSlot {
		return e, bad("slot", "%d: want 0 to %d (%d addresses every slot)", *f.Slot, maxSlot, aoe.BroadcastMinor)
	}
	e.Shelf, e.Slot = uint16(*f.Shelf), uint8(*f.Slot)
	if f.Interfaces == nil || len(*f.Interfaces) == 0 {
		return e, p.errAt(table, "[export.%s]: no interfaces: set interfaces = [\"eth0\"] here or in [defaults]", name)
	}
	for _, ifname := range *f.Interfaces {
		if ifname == "" || countOf(*f.Interfaces, ifname) > 1 {
			return e, bad("interfaces", "%q: empty or repeated interface name", ifname)
		}
	}
	e.Interfaces = slices.Clone(*f.Interfaces)
	if err := p.setNumbers(&e, f, bad); err != nil {
		return e, err
	}
	e.Direct, e.Sync, e.ReadOnly = deref(f.Direct), deref(f.Sync), deref(f.ReadOnly)
	if err := p.setMACs(&e, f, bad); err != nil {
		return e, err
	}
	if f.StateDir != nil && *f.StateDir == "" {
		return e, bad("state-dir", "empty directory name")
	}
	e.StateDir = deref(f.StateDir)
	if f.AnnounceInterval != nil {
		d, err := time.ParseDuration(*f.AnnounceInterval)
		if err != nil || d < 0 {
			return e, bad("announce-interval", "%q: want a duration such as \"30s\"", *f.AnnounceInterval)
		}
		e.AnnounceInterval = d
	}
	return e, p.setAuth(&e, f, bad)
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

// setNumbers checks buffers, offset, length, workers and vlan.
func (p parser) setNumbers(e *Export, f fields, bad func(string, string, ...any) error) error {
	if f.Buffers != nil {
		if *f.Buffers < MinBuffers || *f.Buffers > MaxBuffers {
			return bad("buffers", "%d: want %d to %d", *f.Buffers, MinBuffers, MaxBuffers)
		}
		e.Buffers = int(*f.Buffers)
	}
	e.Offset, e.Length = deref(f.Offset), deref(f.Length)
	if e.Offset < 0 || e.Offset > maxSector {
		return bad("offset", "%d: want a number of 512-byte sectors, 0 or more", e.Offset)
	}
	if f.Length != nil && (e.Length < 1 || e.Length > maxSector-e.Offset) {
		return bad("length", "%d: want a number of 512-byte sectors, 1 or more, ending within the largest file", e.Length)
	}
	if w := deref(f.Workers); w < 0 || w > MaxBuffers {
		return bad("workers", "%d: want 1 to %d (or 0 for the buffer count)", w, MaxBuffers)
	}
	e.Workers = int(deref(f.Workers))
	if f.VLAN != nil {
		if *f.VLAN < 1 || *f.VLAN > MaxVLAN {
			return bad("vlan", "%d: want a VLAN ID from 1 to %d (leave it out for untagged)", *f.VLAN, MaxVLAN)
		}
		e.VLAN = uint16(*f.VLAN)
	}
	return nil
}

// setMACs checks allowed-macs: initiators' addresses only, since a group
// address never sends a request and a list of none would serve everyone.
func (p parser) setMACs(e *Export, f fields, bad func(string, string, ...any) error) error {
	if f.AllowedMACs == nil {
		return nil
	}
	if len(*f.AllowedMACs) == 0 {
		return bad("allowed-macs", "empty list: leave the key out to serve every initiator")
	}
	if len(*f.AllowedMACs) > MaxMACs {
		return bad("allowed-macs", "%d addresses; the MAC mask list holds at most %d", len(*f.AllowedMACs), MaxMACs)
	}
	for _, s := range *f.AllowedMACs {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return bad("allowed-macs", "%q: want an address such as 00:11:22:33:44:55", s)
		}
		if m.IsMulticast() || m.IsZero() {
			return bad("allowed-macs", "%s: a group or zero address is never an initiator's", m)
		}
		e.AllowedMACs = append(e.AllowedMACs, m)
	}
	return nil
}

// setAuth checks auth-keys, auth-mode and auth-encrypt.
func (p parser) setAuth(e *Export, f fields, bad func(string, string, ...any) error) error {
	if f.AuthKeys != nil {
		for _, k := range *f.AuthKeys {
			if k == "" {
				return bad("auth-keys", "empty file name")
			}
		}
		e.AuthKeys = slices.Clone(*f.AuthKeys)
	}
	if f.AuthMode != nil {
		mode, err := seal.ParseMode(*f.AuthMode)
		if err != nil || *f.AuthMode == "" {
			return bad("auth-mode", "%q: want required or optional", *f.AuthMode)
		}
		if len(e.AuthKeys) == 0 {
			return bad("auth-mode", "needs auth-keys")
		}
		e.AuthMode = mode
	}
	if e.AuthEncrypt = deref(f.AuthEncrypt); e.AuthEncrypt && len(e.AuthKeys) == 0 {
		return bad("auth-encrypt", "needs auth-keys")
	}
	return nil
}

// checkDuplicates refuses two exports with one shelf.slot: initiators
// could not tell them apart. Two on different VLANs are two devices.
func (p parser) checkDuplicates(c *Config) error {
	type addr struct {
		shelf uint16
		slot  uint8
		vlan  uint16
	}
	seen := make(map[addr]string)
	for _, e := range c.Exports {
		a := addr{e.Shelf, e.Slot, e.VLAN}
		if first, ok := seen[a]; ok {
			line := keyLine(p.data, toml.Key{"export", first})
			return p.errAt(p.keyOf(e.Name, "shelf"), "[export.%s]: e%d.%d is already exported by [export.%s] (line %d)",
				e.Name, e.Shelf, e.Slot, first, line)
		}
		seen[a] = e.Name
	}
	return nil
}

// checkFiles checks that each export's file exists, with stat.
func (c *Config) checkFiles(name string, data []byte, stat func(string) (fs.FileInfo, error)) error {
	p := parser{name: name, data: data}
	for _, e := range c.Exports {
		if _, err := stat(e.File); err != nil {
			perr := p.errAt(toml.Key{"export", e.Name, "file"}, "[export.%s] file: %v", e.Name, err)
			perr.Err = err
			return perr
		}
	}
	return nil
}

// Equal reports whether two exports are configured alike.
func (e Export) Equal(o Export) bool { return reflect.DeepEqual(e, o) }

// keyLine returns the line where key is defined in the TOML document
// data, or 0 if it is not (or key is empty).
//
// BurntSushi/toml keeps every key's position but exports it only in the
// errors it returns, so keyLine decodes data once more into a type that
// holds only key, as a value that refuses to be decoded: the error then
// carries the key's position. This costs a parse, and runs only for an
// error message.
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	var t reflect.Type = reflect.TypeFor[refuse]()
	for i := len(key) - 1; i >= 0; i-- {
		t = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: t,
			Tag:  reflect.StructTag(fmt.Sprintf(`toml:%q`, key[i])),
		}})
	}
	v := reflect.New(t)
	_, err := toml.Decode(string(data), v.Interface())
	var pe toml.ParseError
	// ParseError does not unwrap to the cause: its message is the cause's.
	if errors.As(err, &pe) && pe.Message == errRefused.Error() {
		return pe.Position.Line
	}
	return 0
}

// errRefused is what a refuse returns.
var errRefused = errors.New("exportconf: key located")

// refuse is a TOML value that fails to decode, for keyLine.
type refuse struct{}

// UnmarshalTOML implements toml.Unmarshaler.
func (*refuse) UnmarshalTOML(any) error { return errRefused }
