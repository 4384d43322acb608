// Package bladectl is the protocol of ironblade's control socket, which
// ironbladectl speaks: on a Unix socket, the client writes one JSON
// Request per line and the server answers each with one JSON Response on
// one line. Both carry the protocol version ("v": 1); a server refuses a
// request of another version, so a later version can change the messages.
//
// The package holds the messages, their checks (Request.Check, shared by
// both sides so that a command line is refused before it is sent), the
// line codec, the client call and the server loop; ironblade decides what
// a request does.
package bladectl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/ironblade/ironblade/aoe"
)

// Version is the protocol version this package speaks.
const Version = 1

// MaxLine bounds one message: a request with 255 addresses or a response
// for many exports fits well within it.
const MaxLine = 1 << 20

// Verbs of a Request.
const (
	VerbList    = "list"    // the exports and their state
	VerbStat    = "stat"    // the same with the targets' counters
	VerbConfig  = "config"  // the config string: get, set, clear
	VerbMask    = "mask"    // the MAC mask list: list, add, remove, clear
	VerbReserve = "reserve" // the reserve list: list, set, clear
)

// Ops of a Request, by verb; the first is the default.
var ops = map[string][]string{
	VerbList:    {""},
	VerbStat:    {""},
	VerbConfig:  {"get", "set", "clear"},
	VerbMask:    {"list", "add", "remove", "clear"},
	VerbReserve: {"list", "set", "clear"},
}

// Ops returns the ops of verb, the default first; nil for an unknown verb.
func Ops(verb string) []string { return slices.Clone(ops[verb]) }

// A Request asks ironblade for one thing.
type Request struct {
	V    int    `json:"v"`
	Verb string `json:"verb"`
	Op   string `json:"op,omitempty"`
	// Target is the export's address, "e1.0"; empty for every export
	// (only for list, stat and the reading ops).
	Target string `json:"target,omitempty"`
	// String is the config string of config set.
	String string `json:"string,omitempty"`
	// Force lets config set replace another string.
	Force bool `json:"force,omitempty"`
	// MACs are the addresses of mask add and remove and reserve set.
	MACs []string `json:"macs,omitempty"`
}

// A Response answers a Request: the exports it addressed, as they are
// after the request (also when it failed part-way), and what went wrong.
type Response struct {
	V int `json:"v"`
	// Error is empty on success.
	Error string `json:"error,omitempty"`
	// Code classifies Error: CodeNoExport, CodeBadRequest or CodeFailed.
	Code    string   `json:"code,omitempty"`
	Exports []Export `json:"exports"`
}

// Codes of a Response's error.
const (
	// CodeNoExport: the process serves no export of the request's Target
	// (another process may).
	CodeNoExport = "no_export"
	// CodeBadRequest: the request is malformed or of another version.
	CodeBadRequest = "bad_request"
	// CodeFailed: the change failed, on some paths at least.
	CodeFailed = "failed"
)

// An Export is one shelf.slot served by the process.
type Export struct {
	Target string `json:"target"`
	Shelf  uint16 `json:"shelf"`
	Slot   uint8  `json:"slot"`
	// Name is the export's table in the configuration file; empty for
	// vblade's command line.
	Name       string   `json:"name,omitempty"`
	File       string   `json:"file"`
	Interfaces []string `json:"interfaces"`
	// State is "serving" (every path), "starting", "degraded" (some
	// paths serve) or "failed" (a path stopped on an error; SIGHUP
	// restarts it).
	State    string `json:"state"`
	Sync     bool   `json:"sync"`
	ReadOnly bool   `json:"read_only"`
	// Size is the exported capacity in bytes.
	Size int64 `json:"size"`
	// Paths are the export's targets, one per interface, each with its
	// own config string, MAC mask and reserve lists.
	Paths []Path `json:"paths"`
}

// A Path is one target of an export: the export on one interface.
type Path struct {
	Netif string `json:"netif"`
	// State is "serving", "starting" or "failed".
	State string `json:"state"`
	// ConfigString is the config string (a byte that is not UTF-8 reads
	// as U+FFFD).
	ConfigString string   `json:"config_string"`
	MACMask      []string `json:"mac_mask"`
	Reserve      []string `json:"reserve"`
	// Stats are the target's counters, in stat's answers only.
	Stats *Stats `json:"stats,omitempty"`
}

// Stats are a target's counters since it started (target.Stats).
type Stats struct {
	FramesIn     uint64            `json:"frames_in"`
	FramesOut    uint64            `json:"frames_out"`
	BytesRead    uint64            `json:"bytes_read"`
	BytesWritten uint64            `json:"bytes_written"`
	Syncs        uint64            `json:"syncs"`
	SyncedWrites uint64            `json:"synced_writes"`
	SendErrors   uint64            `json:"send_errors"`
	Dropped      map[string]uint64 `json:"dropped"`
	Errors       map[string]uint64 `json:"errors"`
}

// ParseTarget reads an export's address, "e1.0" (the "e" may be left
// out): shelf 0 to 65534, slot 0 to 254.
func ParseTarget(s string) (shelf uint16, slot uint8, err error) {
	sh, sl, ok := strings.Cut(strings.TrimPrefix(s, "e"), ".")
	a, err1 := strconv.ParseUint(sh, 10, 16)
	b, err2 := strconv.ParseUint(sl, 10, 8)
	if !ok || err1 != nil || err2 != nil || a >= aoe.BroadcastMajor || b >= aoe.BroadcastMinor {
		return 0, 0, fmt.Errorf("export %q: want eSHELF.SLOT, such as e1.0 (shelf 0 to %d, slot 0 to %d)",
			s, aoe.BroadcastMajor-1, aoe.BroadcastMinor-1)
	}
	return uint16(a), uint8(b), nil
}

// TargetName is the address of shelf.slot as ParseTarget reads it.
func TargetName(shelf uint16, slot uint8) string { return fmt.Sprintf("e%d.%d", shelf, slot) }

// Check refuses a request that cannot be carried out whatever the
// exports, and puts it in canonical form: the default op filled in, the
// target as "e1.0", the addresses as 00:11:22:33:44:55.
func (r *Request) Check() error {
	if r.V != Version {
		return fmt.Errorf("protocol version %d: this end speaks %d", r.V, Version)
	}
	known, ok := ops[r.Verb]
	if !ok {
		return fmt.Errorf("unknown verb %q: want list, stat, config, mask or reserve", r.Verb)
	}
	if r.Op == "" {
		r.Op = known[0]
	}
	if !slices.Contains(known, r.Op) {
		return fmt.Errorf("%s: unknown op %q: want %s", r.Verb, r.Op, strings.Join(known, ", "))
	}
	reading := r.Op == "" || r.Op == "get" || r.Op == "list"
	if r.Target == "" && !reading {
		return fmt.Errorf("%s %s: which export? (eSHELF.SLOT)", r.Verb, r.Op)
	}
	if r.Target != "" {
		shelf, slot, err := ParseTarget(r.Target)
		if err != nil {
			return err
		}
		r.Target = TargetName(shelf, slot)
	}
	if r.Verb == VerbConfig && r.Op == "set" && len(r.String) > aoe.MaxConfigStringLen {
		return fmt.Errorf("config set: %d-byte string, at most %d", len(r.String), aoe.MaxConfigStringLen)
	}
	if r.Force && (r.Verb != VerbConfig || r.Op != "set") {
		return fmt.Errorf("%s %s: force is for config set only", r.Verb, r.Op)
	}
	return r.checkMACs()
}

// checkMACs checks that the ops that take addresses have some, and only
// they, and writes them in canonical form.
func (r *Request) checkMACs() error {
	takesMACs := r.Op == "add" || r.Op == "remove" || (r.Verb == VerbReserve && r.Op == "set")
	if !takesMACs {
		if len(r.MACs) > 0 {
			return fmt.Errorf("%s %s: takes no MAC address", r.Verb, r.Op)
		}
		return nil
	}
	if len(r.MACs) == 0 {
		return fmt.Errorf("%s %s: which MAC addresses?", r.Verb, r.Op)
	}
	if len(r.MACs) > 255 {
		return fmt.Errorf("%s %s: %d MAC addresses, at most 255", r.Verb, r.Op, len(r.MACs))
	}
	for i, s := range r.MACs {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return fmt.Errorf("%s %s: bad MAC address %q: want 12 hex digits, optionally separated by colons", r.Verb, r.Op, s)
		}
		r.MACs[i] = m.String()
	}
	return nil
}

// ParseMACs reads the addresses of a checked request.
func ParseMACs(ss []string) ([]aoe.MAC, error) {
	macs := make([]aoe.MAC, 0, len(ss))
	for _, s := range ss {
		m, err := aoe.ParseMAC(s)
		if err != nil {
			return nil, err
		}
		macs = append(macs, m)
	}
	return macs, nil
}

// FormatMACs writes addresses as a Path lists them; never nil, so that
// JSON shows an empty list as [].
func FormatMACs(macs []aoe.MAC) []string {
	ss := make([]string, 0, len(macs))
	for _, m := range macs {
		ss = append(ss, m.String())
	}
	return ss
}

// WriteMessage writes v as one line of JSON.
func WriteMessage(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("control: encode: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control: write: %w", err)
	}
	return nil
}

// ErrLineTooLong is returned by ReadMessage for a line over MaxLine bytes.
var ErrLineTooLong = errors.New("control: message longer than the limit")

// ReadMessage reads one line of JSON into v. It returns io.EOF at the end
// of the stream between messages. Unknown fields are refused: a message
// this version does not understand fully is not carried out in part.
func ReadMessage(r *bufio.Reader, v any) error {
	line, err := readLine(r)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("control: decode: %w", err)
	}
	if dec.More() {
		return errors.New("control: decode: more than one value on the line")
	}
	return nil
}

// readLine reads up to a newline, at most MaxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > MaxLine {
			return nil, ErrLineTooLong
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil, io.EOF
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("control: read: %w", io.ErrUnexpectedEOF)
		default:
			return nil, fmt.Errorf("control: read: %w", err)
		}
	}
}
