package cliflag

import (
	"errors"
	"testing"
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
