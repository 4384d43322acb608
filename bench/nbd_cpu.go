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
// far, from /proc/PID/stat: to the nearest clock tick.
func processCPU(pid int) (time.Duration, error) {
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
