package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// processCPU returns the user plus system CPU time process pid has used so
// far. It sums the scheduler's run time of each of its threads, in
// nanoseconds, from /proc/PID/task/*/schedstat; without those files
// (kernels without CONFIG_SCHED_INFO) it reads /proc/PID/stat, whose times
// are sampled at each clock tick and so overcharge a process that wakes
// often for short bursts, as a target at queue depth 1 does.
func processCPU(pid int) (time.Duration, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	if tasks, err := os.ReadDir(dir); err == nil {
		var sum time.Duration
		counted := 0
		for _, t := range tasks {
			b, err := os.ReadFile(dir + "/" + t.Name() + "/schedstat")
			if err != nil {
				continue // the thread ended, or no schedstat at all
			}
			d, err := parseSchedstat(string(b))
			if err != nil {
				return 0, fmt.Errorf("%s/%s/schedstat: %w", dir, t.Name(), err)
			}
			sum += d
			counted++
		}
		if counted > 0 {
			return sum, nil
		}
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	d, err := parseProcStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return d, nil
}

// parseSchedstat reads the time a thread has run from the contents of its
// schedstat file: the first of three numbers, in nanoseconds.
func parseSchedstat(s string) (time.Duration, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return 0, fmt.Errorf("%d fields, want 3", len(f))
	}
	ns, err := strconv.ParseUint(f[0], 10, 63)
	if err != nil {
		return 0, fmt.Errorf("bad run time %q", f[0])
	}
	return time.Duration(ns), nil
}

// parseProcStat reads the user plus system CPU time from the contents of a
// /proc/PID/stat file.
func parseProcStat(s string) (time.Duration, error) {
	// The command name, in parentheses, may hold spaces and parentheses:
	// count fields from the last ')'. utime and stime are fields 14 and
	// 15 of the line, so 12 and 13 after it.
	end := strings.LastIndexByte(s, ')')
	if end < 0 {
		return 0, errors.New("no command name")
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 32)
	stime, err2 := strconv.ParseUint(f[12], 10, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad CPU times %q %q", f[11], f[12])
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// selfCPU returns the user plus system CPU time this process has used.
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures the CPU time a process uses from its start to a call
// of seconds; a process that cannot be read measures 0.
type cpuMeter struct {
	read  func() (time.Duration, error)
	start time.Duration
	err   error
}

// meterProcess starts measuring process pid.
func meterProcess(pid int) *cpuMeter {
	return startMeter(func() (time.Duration, error) { return processCPU(pid) })
}

// meterSelf starts measuring this process.
func meterSelf() *cpuMeter {
	return startMeter(func() (time.Duration, error) { return selfCPU(), nil })
}

// startMeter starts measuring the CPU time read reports.
func startMeter(read func() (time.Duration, error)) *cpuMeter {
	m := &cpuMeter{read: read}
	m.start, m.err = read()
	return m
}

// seconds returns the CPU time used since the meter started, in seconds.
func (m *cpuMeter) seconds() float64 {
	if m.err != nil {
		return 0
	}
	now, err := m.read()
	if err != nil || now < m.start {
		return 0
	}
	return (now - m.start).Seconds()
}

// machineTimes returns the busy and total CPU time of all the machine's
// CPUs so far, in clock ticks, from the first line of /proc/stat.
func machineTimes() (busy, total uint64, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, v := range f[1:] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		total += n
		if i != 3 && i != 4 { // idle and iowait
			busy += n
		}
	}
	return busy, total, nil
}

// WindowCPU is the CPU used during a measured window, in CPUs (CPU time
// over the window's length): 1 is one CPU kept busy throughout.
type WindowCPU struct {
	Target    float64
	Generator float64
	// Machine is the busy share of all the machine's CPUs, 0 to 1.
	Machine float64
}

// meterWindow measures the CPU that process pid, this process and the
// machine use from warmup after now to duration later: the window a Run
// started now measures. The result comes on the channel once the window
// has passed; it never comes if stop closes first.
func meterWindow(pid int, warmup, duration time.Duration, stop <-chan struct{}) <-chan WindowCPU {
	out := make(chan WindowCPU, 1)
	go func() {
		if !sleepUnless(warmup, stop) {
			return
		}
		target, gen := meterProcess(pid), meterSelf()
		busy0, total0, err := machineTimes()
		start := time.Now()
		if !sleepUnless(duration, stop) {
			return
		}
		secs := time.Since(start).Seconds()
		w := WindowCPU{Target: target.seconds() / secs, Generator: gen.seconds() / secs}
		if busy1, total1, err2 := machineTimes(); err == nil && err2 == nil && total1 > total0 {
			w.Machine = float64(busy1-busy0) / float64(total1-total0)
		}
		out <- w
	}()
	return out
}

// sleepUnless waits for d to pass and reports true, or for stop to close
// first and reports false.
func sleepUnless(d time.Duration, stop <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}
