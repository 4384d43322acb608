//go:build !linux

package bench

import "errors"

// pinGenerator fails: pinning is implemented on Linux only.
func pinGenerator() (target int, gen string, restore func(), err error) {
	return 0, "", nil, errors.New("CPU pinning needs Linux")
}
