package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ironblade/ironblade/internal/cliflag"
)

// optionTable maps every short (one-letter) and long name of a set of
// urfave/cli flags to its spec, so that the getopt emulation and the flag
// definitions cannot drift apart. A flag takes no argument when it is a
// bool flag, as in getopt's optstring without a colon.
type optionTable struct {
	short map[rune]cliflag.Spec
	long  map[string]cliflag.Spec
}

// newOptionTable builds the table from flags.
func newOptionTable(flags []cli.Flag) optionTable {
	t := optionTable{short: make(map[rune]cliflag.Spec), long: make(map[string]cliflag.Spec)}
	for n, spec := range cliflag.Index(flags) {
		if r := []rune(n); len(r) == 1 {
			t.short[r[0]] = spec
		} else {
			t.long[n] = spec
		}
	}
	return t
}

// lookupLong finds a long option by its full name or, as getopt_long
// allows, by a prefix that matches only one option.
func (t optionTable) lookupLong(name string) (cliflag.Spec, error) {
	if spec, ok := t.long[name]; ok {
		return spec, nil
	}
	candidates := make(map[string]cliflag.Spec) // by primary name: aliases are one option
	for n, spec := range t.long {
		if name != "" && strings.HasPrefix(n, name) {
			candidates[spec.Name] = spec
		}
	}
	switch len(candidates) {
	case 0:
		return cliflag.Spec{}, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		for _, spec := range candidates {
			return spec, nil
		}
	}
	names := slices.Sorted(maps.Keys(candidates))
	return cliflag.Spec{}, fmt.Errorf("option '--%s' is ambiguous; possibilities: --%s", name, strings.Join(names, " --"))
}

// permuteArgs rewrites a command line (without the program name) the way
// glibc's getopt_long reads it, into a form the flag package parses the
// same way: every option first, as --name or --name=value, then "--", then
// the operands in their original order.
//
// That gives ironblade vblade's exact command-line grammar: bundled short
// options (-rs), attached values (-b8, -rb8), a value in the next argument
// even when it starts with '-' (-m -x is "-x" for -m), "--" ending the
// options, "-" as an operand, and options after operands (Debian's
// vblade@.service puts $options last), which the flag package alone would
// take for operands. With posixlyCorrect (POSIXLY_CORRECT set in the
// environment) the first operand ends the options, as in getopt.
func permuteArgs(t optionTable, args []string, posixlyCorrect bool) ([]string, error) {
	var opts, operands []string
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "--":
			operands = append(operands, args[i+1:]...)
			i = len(args)
		case arg == "-" || !strings.HasPrefix(arg, "-"):
			if posixlyCorrect {
				operands = append(operands, args[i:]...)
				i = len(args)
				break
			}
			operands = append(operands, arg)
		case strings.HasPrefix(arg, "--"):
			var err error
			if opts, i, err = t.longOption(opts, args, i); err != nil {
				return nil, err
			}
		default:
			var err error
			if opts, i, err = t.shortOptions(opts, args, i); err != nil {
				return nil, err
			}
		}
	}
	out := make([]string, 0, len(opts)+1+len(operands))
	out = append(out, opts...)
	out = append(out, "--")
	return append(out, operands...), nil
}

// longOption reads the long option args[i] ("--name", "--name=value" or
// "--name value"), appends it to opts in canonical form and returns opts
// and the index of the last argument it used.
func (t optionTable) longOption(opts, args []string, i int) ([]string, int, error) {
	name, value, hasEq := strings.Cut(args[i][2:], "=")
	spec, err := t.lookupLong(name)
	if err != nil {
		return nil, i, err
	}
	switch {
	case !spec.TakesValue && hasEq:
		return nil, i, fmt.Errorf("option '--%s' doesn't allow an argument", spec.Name)
	case spec.TakesValue && !hasEq:
		if i+1 >= len(args) {
			return nil, i, fmt.Errorf("option '--%s' requires an argument", spec.Name)
		}
		i++
		value = args[i]
	}
	return append(opts, canonicalOption(spec, value)), i, nil
}

// shortOptions reads the cluster of short options args[i] (-rs, -b8,
// -rb 8): options without a value up to the first that takes one, whose
// value is the rest of the cluster or else the next argument. It appends
// them to opts in canonical form and returns opts and the index of the
// last argument it used.
func (t optionTable) shortOptions(opts, args []string, i int) ([]string, int, error) {
	cluster := []rune(args[i][1:])
	for j, c := range cluster {
		spec, ok := t.short[c]
		if !ok {
			return nil, i, fmt.Errorf("invalid option -- '%c'", c)
		}
		if !spec.TakesValue {
			opts = append(opts, canonicalOption(spec, ""))
			continue
		}
		value := string(cluster[j+1:])
		if value == "" {
			if i+1 >= len(args) {
				return nil, i, fmt.Errorf("option requires an argument -- '%c'", c)
			}
			i++
			value = args[i]
		}
		return append(opts, canonicalOption(spec, value)), i, nil
	}
	return opts, i, nil
}

// canonicalOption writes an option as permuteArgs hands it on: --name, or
// --name=value so that a value starting with '-' stays the option's.
func canonicalOption(spec cliflag.Spec, value string) string {
	if spec.TakesValue {
		return "--" + spec.Name + "=" + value
	}
	return "--" + spec.Name
}
