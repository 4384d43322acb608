package cliflag

import (
	"errors"
	"io"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagTable maps each name of a set of flags ("i", "interface") to the
// flag's main name and whether it takes a value.
type flagTable map[string]Spec

// newFlagTable indexes flags by every name.
func newFlagTable(flags []cli.Flag) flagTable { return Index(flags) }

// lookup reads a command-line word ("-i", "--wait=5s") as a flag of the
// table. It reports whether it is one, the word with the flag's main name
// ("--interface", "--wait=5s"), and whether the flag still needs the next
// word as its value.
func (t flagTable) lookup(word string) (known bool, canonical string, needsValue bool) {
	name, value, hasValue := strings.Cut(strings.TrimLeft(word, "-"), "=")
	f, known := t[name]
	if !known {
		return false, word, false
	}
	canonical = "--" + f.Name
	if hasValue {
		canonical += "=" + value
	}
	return true, canonical, f.TakesValue && !hasValue
}

// isFlag reports whether a command-line word is an option.
func isFlag(word string) bool { return len(word) > 1 && word[0] == '-' }

// Permute reorders a command line (without the program name) the way
// urfave/cli needs it, so that it reads as GNU tools do: global options may
// follow the command, and the command's options may follow its operands
// ("serve e1.0 --unix /run/x.sock"). Global options move before the
// command, the command's options before its operands; "--" ends the
// options. Options are renamed to their long names, since the library
// refuses a repeated option given under both of its names ("-i a
// --interface b"), and a command's --help drops its operands, which the
// library would take for a help topic. A line whose command is unknown is
// left alone for the library to report.
//
// ironaoe and ironbladectl use it. It shares only the flag index (Index)
// with ironblade's getopt emulation: that one must read vblade's command
// line exactly (bundled short options, attached values, glibc's error
// messages), while these keep the flag package's grammar (-name and --name
// alike, no bundling) and their commands.
func Permute(app *cli.App, args []string) []string {
	global := newFlagTable(append(app.Flags, cli.HelpFlag, cli.VersionFlag))
	var globals []string
	i := 0
	for ; i < len(args) && isFlag(args[i]) && args[i] != "--"; i++ {
		globals = append(globals, args[i])
		if _, _, needs := global.lookup(args[i]); needs && i+1 < len(args) {
			i++
			globals = append(globals, args[i])
		}
	}
	if i >= len(args) || args[i] == "--" {
		return args
	}
	var cmd *cli.Command
	for _, c := range app.Commands {
		if c.HasName(args[i]) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	local := newFlagTable(append(cmd.Flags, cli.HelpFlag))
	helpFlag := "--" + cli.HelpFlag.Names()[0]
	var flags, operands []string
	rest := args[i+1:]
	for j := 0; j < len(rest); j++ {
		w := rest[j]
		if w == "--" {
			operands = append(operands, rest[j+1:]...)
			break
		}
		if !isFlag(w) {
			operands = append(operands, w)
			continue
		}
		dst := &flags
		known, canonical, needs := local.lookup(w)
		if !known {
			if known, canonical, needs = global.lookup(w); known {
				dst = &globals
			}
		}
		if canonical == helpFlag {
			return append(globals, args[i], helpFlag)
		}
		*dst = append(*dst, canonical)
		if needs && j+1 < len(rest) {
			j++
			*dst = append(*dst, rest[j])
		}
	}
	out := append(append(globals, args[i]), flags...)
	if len(operands) > 0 {
		out = append(out, "--")
	}
	return append(out, operands...)
}

// Run runs app on a full command line (args[0] is the program name; an
// empty args runs it bare), the rest reordered by Permute.
func Run(app *cli.App, args []string) error {
	if len(args) == 0 {
		args = []string{app.Name}
	}
	return app.Run(append([]string{args[0]}, Permute(app, args[1:])...))
}

// ErrHelpShown is returned by Parse when the command line asked for the
// help or the version, which was printed instead of running anything.
var ErrHelpShown = errors.New("help or version shown")

// Parse runs on a full command line, with Run, the application newApp
// builds with stdout for its help and an action that only keeps what it
// is given, and returns that: the parsed command line, checked by the
// application's own code. It returns ErrHelpShown after printing the help
// or the version, and the application's error otherwise.
func Parse[T any](args []string, stdout io.Writer, newApp func(stdout, stderr io.Writer, action func(*cli.Context, T) error) *cli.App) (T, error) {
	var (
		parsed, zero T
		ran          bool
	)
	app := newApp(stdout, io.Discard, func(_ *cli.Context, v T) error {
		parsed, ran = v, true
		return nil
	})
	if err := Run(app, args); err != nil {
		return zero, err
	}
	if !ran {
		return zero, ErrHelpShown
	}
	return parsed, nil
}
