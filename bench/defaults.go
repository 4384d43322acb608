package bench

// The benches' configurations (CompareConfig, NBDConfig, VerifyOptions)
// give a zero field its default in one place each, withDefaults, a line a
// field: cmp.Or for the comparable fields and orDefault, below, for the
// slices. The defaults that several benches share are named here.

// Defaults of the benches that start targets.
const (
	// DefaultVblade is where Debian's vblade package installs vblade.
	DefaultVblade = "/usr/sbin/vblade"
	// DefaultDir holds the targets' backing files: on disk, so that a
	// target's syncs reach a device (on tmpfs fdatasync does nothing).
	DefaultDir = "/var/tmp"
	// defaultFileSize is the size of a target's backing file.
	defaultFileSize = 256 << 20
)

// defaultMTUs are the MTUs a bench sets on its veth pair: Ethernet's and
// jumbo frames.
func defaultMTUs() []int { return []int{1500, 9000} }

// orDefault returns s, or def if s is nil: cmp.Or for slices, which are
// not comparable. An empty slice that is not nil is kept.
func orDefault[S ~[]E, E any](s, def S) S {
	if s == nil {
		return def
	}
	return s
}
