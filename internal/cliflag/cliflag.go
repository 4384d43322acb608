// Package cliflag holds what the commands share about their urfave/cli
// command lines: one wording and one exit status for command-line errors
// (the flag package says "flag needs an argument: -unix" for a flag the
// commands document as --unix), and an index of the flags by name for the
// code that reorders a command line before urfave/cli parses it.
package cliflag

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/urfave/cli/v2"
)

// ErrUsage is wrapped by every error UsageError returns, so that a command
// can exit with status 2 for a bad command line and 1 for a failure.
var ErrUsage = errors.New("bad command line")

// Exit statuses shared by the commands.
const (
	ExitOK      = 0
	ExitFailure = 1
	ExitUsage   = 2
)

// usageError is a command-line mistake, worded for the user.
type usageError struct{ err error }

func (e *usageError) Error() string   { return e.err.Error() }
func (e *usageError) Unwrap() []error { return []error{ErrUsage, e.err} }

// Usagef returns a command-line error, formatted as fmt.Errorf does (%w
// included): it wraps ErrUsage too.
func Usagef(format string, args ...any) error {
	return &usageError{err: fmt.Errorf(format, args...)}
}

var (
	needsArg   = regexp.MustCompile(`^flag needs an argument: -+(\S+)$`)
	notDefined = regexp.MustCompile(`^flag provided but not defined: -+(\S+)$`)
	badValue   = regexp.MustCompile(`^invalid value "(.*)" for flag -+(\S+): (.*)$`)
)

// dashes writes a flag name as the commands document it: -i, --unix.
func dashes(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// UsageError rewords an error of the flag parser and marks it as a usage
// error.
func UsageError(err error) error {
	if err == nil || errors.Is(err, ErrUsage) {
		return err
	}
	msg := err.Error()
	switch {
	case needsArg.MatchString(msg):
		msg = dashes(needsArg.FindStringSubmatch(msg)[1]) + " needs a value"
	case notDefined.MatchString(msg):
		msg = "unknown option " + dashes(notDefined.FindStringSubmatch(msg)[1])
	case badValue.MatchString(msg):
		m := badValue.FindStringSubmatch(msg)
		msg = fmt.Sprintf("%s %q: %s", dashes(m[2]), m[1], m[3])
	}
	return &usageError{err: errors.New(msg)}
}

// OnUsageError is a cli.OnUsageErrorFunc that returns UsageError(err)
// instead of printing the help.
func OnUsageError(_ *cli.Context, err error, _ bool) error { return UsageError(err) }

// Required returns a usage error unless the string flag name is set: a
// missing flag gets one line, not the whole help that cli's Required prints.
func Required(c *cli.Context, name, why string) (string, error) {
	v := c.String(name)
	if v == "" {
		return "", Usagef("%s is required: %s", dashes(name), why)
	}
	return v, nil
}
