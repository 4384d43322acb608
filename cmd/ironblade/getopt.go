package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// optionSpec describes one option the way getopt_long sees it: the name
// the flag package knows it by and whether it takes an argument.
type optionSpec struct {
	name     string // the flag's primary name, used in the rewritten argv
	hasValue bool
}

// optionTable maps every short (one-letter) and long name of a set of
// urfave/cli flags to its spec, so that the getopt emulation and the flag
// definitions cannot drift apart.
type optionTable struct {
	short map[rune]optionSpec
	long  map[string]optionSpec
}

// newOptionTable builds the table from flags. A flag takes no argument when
// it is a bool flag, as in getopt's optstring without a colon.
func newOptionTable(flags []cli.Flag) optionTable {
	t := optionTable{short: make(map[rune]optionSpec), long: make(map[string]optionSpec)}
	for _, f := range flags {
		names := f.Names()
		if len(names) == 0 {
			continue
		}
		_, isBool := f.(*cli.BoolFlag)
		spec := optionSpec{name: names[0], hasValue: !isBool}
		for _, n := range names {
			if r := []rune(n); len(r) == 1 {
				t.short[r[0]] = spec
			} else {
				t.long[n] = spec
			}
		}
	}
	return t
}

// lookupLong finds a long option by its full name or, as getopt_long
// allows, by a prefix that matches only one option.
func (t optionTable) lookupLong(name string) (optionSpec, error) {
	if spec, ok := t.long[name]; ok {
		return spec, nil
	}
	candidates := make(map[string]optionSpec) // by primary name: aliases are one option
	for n, spec := range t.long {
		if name != "" && strings.HasPrefix(n, name) {
			candidates[spec.name] = spec
		}
	}
	switch len(candidates) {
	case 0:
		return optionSpec{}, fmt.Errorf("unrecognized option '--%s'", name)
	case 1:
		for _, spec := range candidates {
			return spec, nil
		}
	}
	names := slices.Sorted(maps.Keys(candidates))
	return optionSpec{}, fmt.Errorf("option '--%s' is ambiguous; possibilities: --%s", name, strings.Join(names, " --"))
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
	emit := func(spec optionSpec, value string) {
		if spec.hasValue {
			opts = append(opts, "--"+spec.name+"="+value)
		} else {
			opts = append(opts, "--"+spec.name)
		}
	}
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
			name, value, hasEq := strings.Cut(arg[2:], "=")
			spec, err := t.lookupLong(name)
			if err != nil {
				return nil, err
			}
			switch {
			case !spec.hasValue && hasEq:
				return nil, fmt.Errorf("option '--%s' doesn't allow an argument", spec.name)
			case spec.hasValue && !hasEq:
				if i+1 >= len(args) {
					return nil, fmt.Errorf("option '--%s' requires an argument", spec.name)
				}
				i++
				value = args[i]
			}
			emit(spec, value)
		default:
			// A cluster of short options: -rs, -b8, -rb 8.
			cluster := []rune(arg[1:])
			for j, c := range cluster {
				spec, ok := t.short[c]
				if !ok {
					return nil, fmt.Errorf("invalid option -- '%c'", c)
				}
				if !spec.hasValue {
					emit(spec, "")
					continue
				}
				value := string(cluster[j+1:])
				if value == "" {
					if i+1 >= len(args) {
						return nil, fmt.Errorf("option requires an argument -- '%c'", c)
					}
					i++
					value = args[i]
				}
				emit(spec, value)
				break
			}
		}
	}
	out := make([]string, 0, len(opts)+1+len(operands))
	out = append(out, opts...)
	out = append(out, "--")
	return append(out, operands...), nil
}
