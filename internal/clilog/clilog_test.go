package clilog

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// parse runs an app with Flags on args and returns what OptionsFrom made of them.
func parse(t *testing.T, args ...string) (Options, error) {
	t.Helper()
	var (
		got    Options
		gotErr error
	)
	app := &cli.App{
		Flags:  Flags(),
		Writer: io.Discard, ErrWriter: io.Discard,
		Action: func(c *cli.Context) error {
			got, gotErr = OptionsFrom(c)
			return nil
		},
	}
	if err := app.Run(append([]string{"test"}, args...)); err != nil {
		t.Fatalf("Run(%q): %v", args, err)
	}
	return got, gotErr
}

func TestOptionsFrom(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		want    Options
		wantErr string
	}{
		{nil, Options{Level: slog.LevelInfo, Format: FormatText}, ""},
		{[]string{"--log-level", "debug", "--log-format=json"}, Options{Level: slog.LevelDebug, Format: FormatJSON}, ""},
		{[]string{"--log-level", "WARN"}, Options{Level: slog.LevelWarn, Format: FormatText}, ""},
		{[]string{"--log-level", "loud"}, Options{}, `--log-level "loud": want debug, info, warn or error`},
		{[]string{"--log-format", "xml"}, Options{}, `--log-format "xml": want text or json`},
	} {
		got, err := parse(t, tc.args...)
		if tc.wantErr != "" {
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %+v, %v; want %+v", tc.args, got, err, tc.want)
		}
	}
}

func TestNew(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, slog.LevelWarn, FormatJSON).Info("hidden")
	New(&buf, slog.LevelWarn, FormatJSON).Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil || rec["msg"] != "shown" {
		t.Errorf("JSON logger wrote %q (%v); want one record, msg shown", buf.String(), err)
	}
	buf.Reset()
	New(&buf, slog.LevelDebug, FormatText).Debug("plain")
	if !strings.Contains(buf.String(), "level=DEBUG msg=plain") {
		t.Errorf("text logger wrote %q", buf.String())
	}
}
