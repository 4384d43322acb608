package cliflag

import (
	"errors"
	"reflect"
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
