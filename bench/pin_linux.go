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

// pinning splits the CPUs this process may use between a target and the
// load generator: the highest for the target (started on it with
// taskset), the others for this process.
type pinning struct {
	// target is the target's CPU; genList names the generator's.
	target  int
	genList string
	gen     unix.CPUSet
	all     unix.CPUSet
}

// newPinning plans the split. It fails without taskset or two CPUs.
func newPinning() (*pinning, error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, fmt.Errorf("needs taskset (util-linux) to start the target on its CPU: %w", err)
	}
	p := &pinning{}
	if err := unix.SchedGetaffinity(0, &p.all); err != nil {
		return nil, fmt.Errorf("sched_getaffinity: %w", err)
	}
	var cpus []int
	for i := range 1 << 10 {
		if p.all.IsSet(i) {
			cpus = append(cpus, i)
		}
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("needs two CPUs, this process may use %d", len(cpus))
	}
	names := make([]string, len(cpus)-1)
	for i, c := range cpus[:len(cpus)-1] {
		p.gen.Set(c)
		names[i] = strconv.Itoa(c)
	}
	p.target, p.genList = cpus[len(cpus)-1], strings.Join(names, ",")
	return p, nil
}

// pin puts every thread of this process, the load generator, on the
// generator's CPUs; threads made later inherit that.
func (p *pinning) pin() error { return setProcessAffinity(&p.gen) }

// unpin gives every thread of this process back all the CPUs it had.
func (p *pinning) unpin() error { return setProcessAffinity(&p.all) }

// setProcessAffinity sets the CPU affinity of every thread of this
// process.
func setProcessAffinity(set *unix.CPUSet) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return fmt.Errorf("set CPU affinity: %w", err)
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("set CPU affinity of thread %d: %w", tid, err)
		}
	}
	return nil
}
