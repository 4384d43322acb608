//go:build linux

package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinGenerator splits the CPUs this process may use: the highest for the
// target (returned, for taskset), the others for this process, the load
// generator, whose every thread it pins to them (threads made later
// inherit that). restore gives the threads back all the CPUs.
func pinGenerator() (target int, gen string, restore func(), err error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return 0, "", nil, fmt.Errorf("needs taskset (util-linux) to start the target on its CPU: %w", err)
	}
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return 0, "", nil, err
	}
	var cpus []int
	for i := range 1 << 10 {
		if allowed.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return 0, "", nil, fmt.Errorf("needs two CPUs, this process may use %d", len(cpus))
	}
	var set unix.CPUSet
	names := make([]string, len(cpus)-1)
	for i, c := range cpus[:len(cpus)-1] {
		set.Set(c)
		names[i] = strconv.Itoa(c)
	}
	restore = func() { _ = setProcessAffinity(&allowed) }
	if err := setProcessAffinity(&set); err != nil {
		restore()
		return 0, "", nil, err
	}
	return cpus[len(cpus)-1], strings.Join(names, ","), restore, nil
}

// setProcessAffinity sets the CPU affinity of every thread of this
// process.
func setProcessAffinity(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
	}
	return nil
}
