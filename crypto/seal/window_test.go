package seal_test

import (
	"math/rand/v2"
	"testing"

	"github.com/ironblade/ironblade/crypto/seal"
)

// accept feeds ns to w in order and returns what Accept said of each.
func accept(w *seal.Window, ns ...uint64) []bool {
	out := make([]bool, len(ns))
	for i, n := range ns {
		out[i] = w.Accept(n)
	}
	return out
}

func TestWindowAcceptsEachNumberOnce(t *testing.T) {
	var w seal.Window
	for n := uint64(1); n <= 3*seal.WindowSize; n++ {
		//lint:ignore SA4000 twice on purpose: Check must not record n
		if !w.Check(n) || !w.Check(n) {
			t.Fatalf("Check(%d) refused a new number (or Check recorded it)", n)
		}
		if !w.Accept(n) {
			t.Fatalf("Accept(%d) refused a new number", n)
		}
		if w.Check(n) || w.Accept(n) {
			t.Fatalf("number %d accepted twice", n)
		}
		if w.Top() != n {
			t.Fatalf("Top() = %d after accepting %d", w.Top(), n)
		}
	}
	// Every number still inside the window stays refused.
	for n := w.Top() - seal.WindowSize + 1; n <= w.Top(); n++ {
		if w.Check(n) || w.Accept(n) {
			t.Fatalf("number %d accepted again after %d more", n, w.Top()-n)
		}
	}
}

func TestWindowRefusesZero(t *testing.T) {
	var w seal.Window
	if w.Check(0) || w.Accept(0) {
		t.Fatal("fresh window accepted 0")
	}
	accept(&w, 1, 2, 100)
	if w.Check(0) || w.Accept(0) {
		t.Fatal("window accepted 0 after other numbers")
	}
	if w.Top() != 100 {
		t.Fatalf("Top() = %d, want 100 (0 must not move it)", w.Top())
	}
}

func TestWindowReorderingInsideWindow(t *testing.T) {
	const top = 5 * seal.WindowSize
	var w seal.Window
	if !w.Accept(top) {
		t.Fatal("first number refused")
	}
	// Everything behind the top but inside the window, in random order:
	// each accepted once.
	ns := make([]uint64, 0, seal.WindowSize-1)
	for n := uint64(top - seal.WindowSize + 1); n < top; n++ {
		ns = append(ns, n)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(ns), func(i, j int) { ns[i], ns[j] = ns[j], ns[i] })
	for _, n := range ns {
		if !w.Accept(n) {
			t.Fatalf("Accept(%d) refused, %d behind the top", n, top-n)
		}
	}
	for _, n := range ns {
		if w.Accept(n) {
			t.Fatalf("Accept(%d) accepted a reordered number twice", n)
		}
	}
	if w.Top() != top {
		t.Fatalf("Top() = %d, want %d: older numbers moved it", w.Top(), top)
	}
}

func TestWindowRefusesTooOld(t *testing.T) {
	tests := []struct {
		name string
		top  uint64
		n    uint64
		want bool
	}{
		{"newest allowed", 10 * seal.WindowSize, 10*seal.WindowSize - seal.WindowSize + 1, true},
		{"exactly WindowSize behind", 10 * seal.WindowSize, 10*seal.WindowSize - seal.WindowSize, false},
		{"far behind", 10 * seal.WindowSize, 1, false},
		{"one behind", 10 * seal.WindowSize, 10*seal.WindowSize - 1, true},
		{"top just below WindowSize", seal.WindowSize - 1, 1, true},
		{"top at WindowSize", seal.WindowSize, 1, true},
		{"top one past WindowSize", seal.WindowSize + 1, 1, false},
		{"near the end of the number space", ^uint64(0), ^uint64(0) - seal.WindowSize, false},
		{"near the end, inside", ^uint64(0), ^uint64(0) - seal.WindowSize + 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w seal.Window
			if !w.Accept(tc.top) {
				t.Fatalf("Accept(%d) refused on a fresh window", tc.top)
			}
			if got := w.Check(tc.n); got != tc.want {
				t.Errorf("Check(%d) with top %d = %v, want %v", tc.n, tc.top, got, tc.want)
			}
			if got := w.Accept(tc.n); got != tc.want {
				t.Errorf("Accept(%d) with top %d = %v, want %v", tc.n, tc.top, got, tc.want)
			}
		})
	}
}

func TestWindowBigJumps(t *testing.T) {
	const words = seal.WindowSize/64 + 1 // the bitmap, slack word included
	tests := []struct {
		name string
		jump uint64
	}{
		{"within the word", 3},
		{"next word", 64},
		{"half the window", seal.WindowSize / 2},
		{"one word short of the window", seal.WindowSize - 64},
		{"exactly the window", seal.WindowSize},
		{"the whole bitmap", words * 64}, // same slot of the ring, one lap on
		{"the bitmap and a word", (words + 1) * 64},
		{"many laps", 1000*words*64 + 17},
		{"to the end of the number space", 1 << 63},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w seal.Window
			// Fill a whole window below the jump, so that every bit of
			// the bitmap is set.
			base := uint64(2 * seal.WindowSize)
			for n := base - seal.WindowSize + 1; n <= base; n++ {
				if !w.Accept(n) {
					t.Fatalf("Accept(%d) refused", n)
				}
			}
			top := base + tc.jump
			if !w.Accept(top) {
				t.Fatalf("jump to %d refused", top)
			}
			// Every number inside the new window that was never accepted
			// must be accepted once: the bits of the old window are gone.
			for n := top - seal.WindowSize + 1; n < top; n++ {
				if n > base-seal.WindowSize && n <= base {
					if w.Accept(n) {
						t.Fatalf("Accept(%d) took a number accepted before the jump", n)
					}
					continue
				}
				if !w.Accept(n) {
					t.Fatalf("Accept(%d) refused after a jump of %d: a stale bit survived", n, tc.jump)
				}
				if w.Accept(n) {
					t.Fatalf("Accept(%d) accepted twice after a jump", n)
				}
			}
			// And everything behind the new window is refused.
			if n := top - seal.WindowSize; n > 0 && w.Accept(n) {
				t.Fatalf("Accept(%d) took a number WindowSize behind the top", n)
			}
		})
	}
}

// modelWindow is the obvious definition of the window: a set of numbers
// accepted and the newest of them.
type modelWindow struct {
	top  uint64
	seen map[uint64]bool
}

func (m *modelWindow) check(n uint64) bool {
	return n != 0 && (n > m.top || m.top-n < seal.WindowSize && !m.seen[n])
}

func (m *modelWindow) accept(n uint64) bool {
	if !m.check(n) {
		return false
	}
	m.seen[n] = true
	m.top = max(m.top, n)
	return true
}

func TestWindowMatchesModel(t *testing.T) {
	for seed := range uint64(8) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		var w seal.Window
		m := modelWindow{seen: make(map[uint64]bool)}
		var recent []uint64
		steps := 20000
		if testing.Short() {
			steps = 4000
		}
		for i := range steps {
			var n uint64
			switch r := rng.IntN(100); {
			case r < 40: // the next few numbers
				n = m.top + rng.Uint64N(4)
			case r < 65: // reordered inside the window
				n = m.top - min(m.top, rng.Uint64N(seal.WindowSize))
			case r < 75: // around the window's edge
				n = m.top - min(m.top, seal.WindowSize-3+rng.Uint64N(6))
			case r < 85: // a replay of something recent
				if len(recent) > 0 {
					n = recent[rng.IntN(len(recent))]
				}
			case r < 95: // a jump, small or past the whole bitmap
				n = m.top + rng.Uint64N(3*seal.WindowSize)
			default: // anything at all
				n = rng.Uint64N(m.top + 2)
			}
			if got, want := w.Check(n), m.check(n); got != want {
				t.Fatalf("seed %d step %d: Check(%d) = %v, model says %v (top %d)", seed, i, n, got, want, m.top)
			}
			if got, want := w.Accept(n), m.accept(n); got != want {
				t.Fatalf("seed %d step %d: Accept(%d) = %v, model says %v (top %d)", seed, i, n, got, want, m.top)
			}
			if w.Top() != m.top {
				t.Fatalf("seed %d step %d: Top() = %d, model says %d", seed, i, w.Top(), m.top)
			}
			if len(recent) < 256 {
				recent = append(recent, n)
			} else {
				recent[rng.IntN(len(recent))] = n
			}
			// Keep the model's set from growing without end: what is
			// behind the window can never count again.
			if i%4096 == 0 {
				for k := range m.seen {
					if m.top-k >= seal.WindowSize {
						delete(m.seen, k)
					}
				}
			}
		}
	}
}
