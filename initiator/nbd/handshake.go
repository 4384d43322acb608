package nbd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// errSessionEnded reports that the client ended the session properly (or
// hung up between messages); it is not a failure.
var errSessionEnded = errors.New("nbd: session ended by client")

// handshake is the server side of the fixed newstyle negotiation on one
// connection.
type handshake struct {
	srv        *Server
	br         *bufio.Reader
	bw         *bufio.Writer
	noZeroes   bool
	structured bool
	data       []byte // option data, reused between options
}

// handshakeResult is what a successful negotiation chose.
type handshakeResult struct {
	backend    Backend
	name       string
	structured bool
}

// run negotiates until the client enters the transmission phase, aborts, or
// breaks the protocol.
func (h *handshake) run() (handshakeResult, error) {
	var greeting [18]byte
	binary.BigEndian.PutUint64(greeting[0:], magicInit)
	binary.BigEndian.PutUint64(greeting[8:], magicOption)
	binary.BigEndian.PutUint16(greeting[16:], handshakeFixedNewstyle|handshakeNoZeroes)
	h.bw.Write(greeting[:])
	if err := h.bw.Flush(); err != nil {
		return handshakeResult{}, fmt.Errorf("nbd: handshake: send greeting: %w", err)
	}

	var cf [4]byte
	if _, err := io.ReadFull(h.br, cf[:]); err != nil {
		return handshakeResult{}, endOrError("read client flags", err)
	}
	clientFlags := binary.BigEndian.Uint32(cf[:])
	if clientFlags&^clientKnownFlags != 0 {
		return handshakeResult{}, fmt.Errorf("nbd: handshake: unknown client flags %#x", clientFlags)
	}
	h.noZeroes = clientFlags&clientNoZeroes != 0

	for {
		res, done, err := h.option()
		if err != nil || done {
			return res, err
		}
	}
}

// endOrError turns a clean EOF between messages into errSessionEnded.
func endOrError(op string, err error) error {
	if errors.Is(err, io.EOF) {
		return errSessionEnded
	}
	return fmt.Errorf("nbd: handshake: %s: %w", op, err)
}

// option reads and answers one option. done is set when the transmission
// phase begins.
func (h *handshake) option() (res handshakeResult, done bool, err error) {
	var hdr [optionHeaderLen]byte
	if _, err := io.ReadFull(h.br, hdr[:]); err != nil {
		return res, false, endOrError("read option", err)
	}
	if m := binary.BigEndian.Uint64(hdr[0:]); m != magicOption {
		return res, false, fmt.Errorf("nbd: handshake: bad option magic %#x", m)
	}
	opt := binary.BigEndian.Uint32(hdr[8:])
	length := binary.BigEndian.Uint32(hdr[12:])

	if length > maxOptionLen {
		if opt == optExportName {
			return res, false, fmt.Errorf("nbd: handshake: export name of %d bytes", length)
		}
		if length > maxOptionDrain {
			return res, false, fmt.Errorf("nbd: handshake: option %d carries %d bytes", opt, length)
		}
		if _, err := io.CopyN(io.Discard, h.br, int64(length)); err != nil {
			return res, false, fmt.Errorf("nbd: handshake: discard option data: %w", err)
		}
		return res, false, h.reply(opt, repErrTooBig, []byte("option data too long"))
	}
	if cap(h.data) < int(length) {
		h.data = make([]byte, length)
	}
	data := h.data[:length]
	if _, err := io.ReadFull(h.br, data); err != nil {
		return res, false, fmt.Errorf("nbd: handshake: read option data: %w", err)
	}

	switch opt {
	case optExportName:
		return h.exportName(data)
	case optAbort:
		// The client may already have hung up; the ACK is a courtesy.
		h.reply(opt, repAck, nil)
		return res, false, errSessionEnded
	case optList:
		return res, false, h.list(data)
	case optInfo, optGo:
		return h.infoOrGo(opt, data)
	case optStructuredReply:
		if len(data) != 0 {
			return res, false, h.reply(opt, repErrInvalid, []byte("structured reply option takes no data"))
		}
		h.structured = true
		return res, false, h.reply(opt, repAck, nil)
	default:
		// Includes NBD_OPT_STARTTLS: this server runs without TLS.
		return res, false, h.reply(opt, repErrUnsup, []byte("option "+strconv.FormatUint(uint64(opt), 10)+" not supported"))
	}
}

// reply sends one option reply with the given payload parts and flushes.
func (h *handshake) reply(opt, typ uint32, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	var hdr [optionReplyLen]byte
	binary.BigEndian.PutUint64(hdr[0:], magicOptionReply)
	binary.BigEndian.PutUint32(hdr[8:], opt)
	binary.BigEndian.PutUint32(hdr[12:], typ)
	binary.BigEndian.PutUint32(hdr[16:], uint32(n))
	h.bw.Write(hdr[:])
	for _, p := range parts {
		h.bw.Write(p)
	}
	if err := h.bw.Flush(); err != nil {
		return fmt.Errorf("nbd: handshake: send option reply: %w", err)
	}
	return nil
}

// lookup finds an export, applying the default-export rule for the empty
// name. It returns the canonical name and description.
func (h *handshake) lookup(name string) (Backend, ExportInfo, bool) {
	exports := h.srv.Exports
	b, ok := exports.Lookup(name)
	list := exports.List()
	if !ok && name == "" && len(list) == 1 {
		name = list[0].Name
		b, ok = exports.Lookup(name)
	}
	if !ok {
		return nil, ExportInfo{}, false
	}
	info := ExportInfo{Name: name}
	for _, e := range list {
		if e.Name == name {
			info.Description = e.Description
			break
		}
	}
	return b, info, true
}

// exportName handles NBD_OPT_EXPORT_NAME, which cannot be refused politely.
func (h *handshake) exportName(data []byte) (handshakeResult, bool, error) {
	if len(data) > maxStringLen {
		return handshakeResult{}, false, fmt.Errorf("nbd: handshake: export name of %d bytes", len(data))
	}
	b, info, ok := h.lookup(string(data))
	if !ok {
		return handshakeResult{}, false, fmt.Errorf("nbd: handshake: unknown export %q", data)
	}
	c := capabilitiesOf(b)
	var msg [10 + exportNameZeroesLen]byte
	binary.BigEndian.PutUint64(msg[0:], uint64(c.size))
	binary.BigEndian.PutUint16(msg[8:], c.flags(h.structured))
	n := 10
	if !h.noZeroes {
		n += exportNameZeroesLen
	}
	h.bw.Write(msg[:n])
	if err := h.bw.Flush(); err != nil {
		return handshakeResult{}, false, fmt.Errorf("nbd: handshake: send export: %w", err)
	}
	return handshakeResult{backend: b, name: info.Name, structured: h.structured}, true, nil
}

// list handles NBD_OPT_LIST.
func (h *handshake) list(data []byte) error {
	if len(data) != 0 {
		return h.reply(optList, repErrInvalid, []byte("list option takes no data"))
	}
	for _, e := range h.srv.Exports.List() {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(e.Name)))
		if err := h.reply(optList, repServer, n[:], []byte(e.Name), []byte(truncate(e.Description))); err != nil {
			return err
		}
	}
	return h.reply(optList, repAck, nil)
}

// infoRequest is a parsed NBD_OPT_INFO or NBD_OPT_GO.
type infoRequest struct {
	name                      string
	wantName, wantDescription bool
	wantBlockSize             bool
}

// parseInfoRequest parses the data of NBD_OPT_INFO and NBD_OPT_GO.
func parseInfoRequest(data []byte) (infoRequest, error) {
	var r infoRequest
	if len(data) < 6 {
		return r, errors.New("option data too short")
	}
	nameLen := binary.BigEndian.Uint32(data)
	if uint64(nameLen) > uint64(len(data)-6) {
		return r, errors.New("export name length exceeds option data")
	}
	if nameLen > maxStringLen {
		return r, errors.New("export name too long")
	}
	r.name = string(data[4 : 4+nameLen])
	rest := data[4+nameLen:]
	count := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) != 2*count {
		return r, errors.New("information request count does not match option length")
	}
	for i := 0; i < count; i++ {
		switch binary.BigEndian.Uint16(rest[2*i:]) {
		case infoName:
			r.wantName = true
		case infoDescription:
			r.wantDescription = true
		case infoBlockSize:
			r.wantBlockSize = true
		}
	}
	return r, nil
}

// infoOrGo handles NBD_OPT_INFO and NBD_OPT_GO; GO enters the transmission
// phase after its final ACK.
func (h *handshake) infoOrGo(opt uint32, data []byte) (handshakeResult, bool, error) {
	req, err := parseInfoRequest(data)
	if err != nil {
		return handshakeResult{}, false, h.reply(opt, repErrInvalid, []byte(err.Error()))
	}
	b, info, ok := h.lookup(req.name)
	if !ok {
		return handshakeResult{}, false, h.reply(opt, repErrUnknown, []byte(truncate("unknown export "+strconv.Quote(req.name))))
	}
	c := capabilitiesOf(b)

	var export [12]byte
	binary.BigEndian.PutUint16(export[0:], infoExport)
	binary.BigEndian.PutUint64(export[2:], uint64(c.size))
	binary.BigEndian.PutUint16(export[10:], c.flags(h.structured))
	if err := h.reply(opt, repInfo, export[:]); err != nil {
		return handshakeResult{}, false, err
	}
	if req.wantName {
		if err := h.reply(opt, repInfo, infoType(infoName), []byte(info.Name)); err != nil {
			return handshakeResult{}, false, err
		}
	}
	if req.wantDescription && info.Description != "" {
		if err := h.reply(opt, repInfo, infoType(infoDescription), []byte(truncate(info.Description))); err != nil {
			return handshakeResult{}, false, err
		}
	}
	// Block sizes are sent even unrequested: clients ignore what they did
	// not ask for, and those that honour them do better.
	var bs [14]byte
	binary.BigEndian.PutUint16(bs[0:], infoBlockSize)
	binary.BigEndian.PutUint32(bs[2:], c.minBlock)
	binary.BigEndian.PutUint32(bs[6:], c.prefBlock)
	binary.BigEndian.PutUint32(bs[10:], h.srv.maxPayload())
	if err := h.reply(opt, repInfo, bs[:]); err != nil {
		return handshakeResult{}, false, err
	}
	if err := h.reply(opt, repAck, nil); err != nil {
		return handshakeResult{}, false, err
	}
	if opt == optInfo {
		return handshakeResult{}, false, nil
	}
	return handshakeResult{backend: b, name: info.Name, structured: h.structured}, true, nil
}

func infoType(t uint16) []byte {
	return binary.BigEndian.AppendUint16(nil, t)
}

// truncate cuts s to the protocol's string limit.
func truncate(s string) string {
	if len(s) > maxStringLen {
		return s[:maxStringLen]
	}
	return s
}
