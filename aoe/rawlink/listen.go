package rawlink

import "github.com/ironblade/ironblade/aoe"

// ListenLink is Listen for callers that hold links as aoe.Link (the
// commands, which take a listen function that tests replace with an
// in-memory link): on failure the link is a nil interface, not a nil *Link
// in one, which would not compare equal to nil.
func ListenLink(iface string, cfg Config) (aoe.Link, error) {
	l, err := Listen(iface, cfg)
	if err != nil {
		return nil, err
	}
	return l, nil
}
