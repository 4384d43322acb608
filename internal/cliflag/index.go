package cliflag

import "github.com/urfave/cli/v2"

// Spec is what code that reorders a command line before urfave/cli parses
// it needs to know of one flag.
type Spec struct {
	// Name is the flag's main name, the one a reordered command line
	// uses: urfave/cli refuses a flag given under two of its names.
	Name string
	// TakesValue says the flag takes a value: every flag but a bool one.
	TakesValue bool
}

// Index maps every name of flags, one-letter and long, to its flag's Spec,
// so that a command's argument permuter reads the same definitions that
// urfave/cli parses with and the two cannot drift apart.
func Index(flags []cli.Flag) map[string]Spec {
	index := make(map[string]Spec)
	for _, f := range flags {
		names := f.Names()
		if len(names) == 0 {
			continue
		}
		spec := Spec{Name: names[0]}
		if v, ok := f.(cli.DocGenerationFlag); ok {
			spec.TakesValue = v.TakesValue()
		}
		for _, n := range names {
			index[n] = spec
		}
	}
	return index
}
