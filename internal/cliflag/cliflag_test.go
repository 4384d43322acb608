package cliflag

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestUsageError(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"flag needs an argument: -unix", "--unix needs a value"},
		{"flag needs an argument: -i", "-i needs a value"},
		{"flag provided but not defined: -frob", "unknown option --frob"},
		{`invalid value "x" for flag -qd: parse error`, `--qd "x": parse error`},
		{"something else", "something else"},
	} {
		err := UsageError(errors.New(tc.in))
		if err.Error() != tc.want {
			t.Errorf("UsageError(%q) = %q, want %q", tc.in, err, tc.want)
		}
		if !errors.Is(err, ErrUsage) {
			t.Errorf("UsageError(%q) does not wrap ErrUsage", tc.in)
		}
	}
	if UsageError(nil) != nil {
		t.Error("UsageError(nil) is not nil")
	}
}

func TestIndex(t *testing.T) {
	index := Index([]cli.Flag{
		&cli.StringFlag{Name: "interface", Aliases: []string{"i"}},
		&cli.BoolFlag{Name: "read-only", Aliases: []string{"r"}},
		&cli.GenericFlag{Name: "mac", Value: &cli.StringSlice{}},
		cli.HelpFlag,
	})
	want := map[string]Spec{
		"interface": {"interface", true}, "i": {"interface", true},
		"read-only": {"read-only", false}, "r": {"read-only", false},
		"mac":  {"mac", true},
		"help": {"help", false}, "h": {"help", false},
	}
	if !reflect.DeepEqual(index, want) {
		t.Errorf("Index = %v, want %v", index, want)
	}
}

func TestParse(t *testing.T) {
	newApp := func(stdout, stderr io.Writer, action func(*cli.Context, string) error) *cli.App {
		return &cli.App{
			Name: "prog", Version: "1", Writer: stdout, ErrWriter: stderr,
			ExitErrHandler: func(*cli.Context, error) {},
			Commands: []*cli.Command{{
				Name:  "greet",
				Flags: []cli.Flag{&cli.StringFlag{Name: "name"}},
				Action: func(c *cli.Context) error {
					if c.String("name") == "" {
						return errors.New("greet: --name is required")
					}
					return action(c, "hello "+c.String("name"))
				},
			}},
		}
	}
	for _, tc := range []struct {
		args    []string
		want    string
		wantErr error
		errText string
	}{
		{args: []string{"prog", "greet", "--name", "x"}, want: "hello x"},
		{args: []string{"prog", "greet", "--name=y"}, want: "hello y"},
		{args: []string{"prog", "--help"}, wantErr: ErrHelpShown},
		{args: []string{"prog", "--version"}, wantErr: ErrHelpShown},
		{args: []string{"prog", "greet"}, errText: "--name is required"},
	} {
		var out strings.Builder
		got, err := Parse(tc.args, &out, newApp)
		switch {
		case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
			t.Errorf("Parse(%q): %v, want %v", tc.args, err, tc.wantErr)
		case tc.errText != "" && (err == nil || !strings.Contains(err.Error(), tc.errText)):
			t.Errorf("Parse(%q): %v, want an error with %q", tc.args, err, tc.errText)
		case tc.wantErr == nil && tc.errText == "" && (err != nil || got != tc.want):
			t.Errorf("Parse(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		case errors.Is(tc.wantErr, ErrHelpShown) && out.Len() == 0:
			t.Errorf("Parse(%q) printed nothing", tc.args)
		}
	}
}
