package aoe

import "errors"

// TagUserland is the tag bit of requests sent by userland tools. The Linux
// aoe driver drops every answer whose tag has it set, and never sets it in
// its own tags (a 16-bit tick count under a 15-bit sequence number), so a
// tool that sets it in every request can share a segment with a kernel
// initiator without either taking the other's answers. The low 31 bits are
// the tool's to number its requests with.
const TagUserland = 1 << 31

// ErrNoResponse is wrapped by the errors of requests that no answer
// matched, by tag and source, after all their transmissions. AoE has no
// negative answer for a lost frame or a target that is gone: silence is
// the only way a request fails there, and every client that retransmits
// and gives up reports it with this error.
var ErrNoResponse = errors.New("no response")
