// Package clilog is the commands' logging: the --log-level and
// --log-format options, which ironblade and ironaoe spell, default and
// check alike, and the slog.Logger they describe.
package clilog

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/urfave/cli/v2"
)

// Names of the options.
const (
	LevelFlag  = "log-level"
	FormatFlag = "log-format"
)

// Log formats --log-format takes.
const (
	FormatText = "text"
	FormatJSON = "json"
)

// Flags returns --log-level (default info) and --log-format (default text).
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: LevelFlag, Value: "info", Usage: "log at `LEVEL`: debug, info, warn or error"},
		&cli.StringFlag{Name: FormatFlag, Value: FormatText, Usage: "log as `FORMAT`: text or json"},
	}
}

// Options are the checked values of the flags Flags defines.
type Options struct {
	Level  slog.Level
	Format string // FormatText or FormatJSON
}

// OptionsFrom reads and checks the flags Flags defines; its errors name
// the option and what it takes.
func OptionsFrom(c *cli.Context) (Options, error) {
	var o Options
	if err := o.Level.UnmarshalText([]byte(c.String(LevelFlag))); err != nil {
		return o, fmt.Errorf("--%s %q: want debug, info, warn or error", LevelFlag, c.String(LevelFlag))
	}
	switch o.Format = c.String(FormatFlag); o.Format {
	case FormatText, FormatJSON:
	default:
		return o, fmt.Errorf("--%s %q: want text or json", FormatFlag, o.Format)
	}
	return o, nil
}

// New returns a logger writing to w at level, as JSON when format is
// FormatJSON and as text otherwise.
func New(w io.Writer, level slog.Level, format string) *slog.Logger {
	hopts := &slog.HandlerOptions{Level: level}
	if format == FormatJSON {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}
