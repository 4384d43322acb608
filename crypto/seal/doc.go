// Package seal is ironblade's authentication extension to AoE: frames
// sealed with HMAC-SHA256 under per-session, per-direction keys, rolling
// 64-bit sequence numbers with a replay window, and a mutual handshake from
// a pre-shared key. docs/auth.md is its specification; this comment is a
// map of the code.
//
// The package is a layer between an aoe.Link and the code that uses it, in
// the manner of net/http middleware: TargetLink wraps the link a target
// serves on, InitiatorLink the link an initiator uses. Above the layer,
// frames are plain AoE, so target and initiator policy know nothing of
// keys; below it, the frames of keyed devices travel sealed:
//
//	sealed frame (command 0xF0): AoE header | seal header | wrapped argument | tag
//	handshake    (command 0xF1): AoE header | handshake message
//
// Policy is configuration, never the wire: a device with a key accepts and
// produces only sealed frames (but for the read-only queries that let
// plain peers see it), and nothing unauthenticated changes that.
//
// The package is named seal, not crypto, so that importers keep the
// standard library's crypto in scope.
package seal
