//go:build !race

package target

// raceEnabled reports whether the race detector is on: it allocates, so
// allocation tests skip.
const raceEnabled = false
