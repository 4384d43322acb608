package testenv_test

import (
	"errors"
	"fmt"
	"testing"
)

// recordingTB is a testing.TB whose Fatal and Fatalf record the message and
// end the goroutine, for testing helpers that must fail a test. Cleanups
// go to the real test.
type recordingTB struct {
	testing.TB
	fatal string
}

func (r *recordingTB) Fatal(args ...any) {
	r.fatal = fmt.Sprint(args...)
	panic(errFatal)
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	panic(errFatal)
}

func (r *recordingTB) Helper() {}

// errFatal unwinds a helper that called recordingTB.Fatal.
var errFatal = errors.New("fatal")

// run runs fn, stopping where it calls Fatal.
func (r *recordingTB) run(fn func()) {
	defer func() {
		if v := recover(); v != nil && v != errFatal {
			panic(v)
		}
	}()
	fn()
}
