package nbdkernel

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseDevice returns N from a whole-device path "/dev/nbdN" (or a bare
// "nbdN"). Partitions ("/dev/nbd0p1") and anything else are rejected.
func ParseDevice(path string) (int, error) {
	name := strings.TrimPrefix(path, "/dev/")
	digits, ok := strings.CutPrefix(name, "nbd")
	if !ok || digits == "" {
		return 0, fmt.Errorf("nbdkernel: %q is not an nbd device (want /dev/nbdN)", path)
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			if strings.ContainsRune(digits, 'p') {
				return 0, fmt.Errorf("nbdkernel: %q is a partition, not a whole nbd device", path)
			}
			return 0, fmt.Errorf("nbdkernel: %q is not an nbd device (want /dev/nbdN)", path)
		}
	}
	if len(digits) > 1 && digits[0] == '0' {
		return 0, fmt.Errorf("nbdkernel: %q: device number has a leading zero", path)
	}
	n, err := strconv.Atoi(digits)
	if err != nil || n > maxIndex {
		return 0, fmt.Errorf("nbdkernel: %q: device number out of range 0..%d", path, maxIndex)
	}
	return n, nil
}
