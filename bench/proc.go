package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat.
// Linux has exported 100 to user space on every architecture for decades.
const clockTick = 10 * time.Millisecond

// procCPU is a process's utime+stime from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name is in parentheses and may hold spaces: fields
	// count from the last ')'; f[0] is field 3, utime field 14, stime 15.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// procStatus is a process's resident memory and threads from
// /proc/<pid>/status.
func procStatus(pid int) (rss int64, threads int) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(strings.TrimSuffix(v, " kB"))
		switch k {
		case "VmRSS":
			n, _ := strconv.ParseInt(v, 10, 64)
			rss = n << 10
		case "Threads":
			threads, _ = strconv.Atoi(v)
		}
	}
	return rss, threads
}

// procFDs counts the open file descriptors of a process.
func procFDs(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

// selfCPU is this process's CPU time (all threads).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// dockerdPID finds the daemon serving the socket: the pid file of a default
// install, checked against /proc/<pid>/comm.
func dockerdPID(pidFile string) (int, error) {
	b, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); string(bytes.TrimSpace(comm)) != "dockerd" {
		return 0, fmt.Errorf("%s names no running dockerd", pidFile)
	}
	return pid, nil
}

// startCPU starts measuring a process's CPU; the function it returns
// gives the CPU spent and the wall time passed since.
func startCPU(pid int) func() (cpu, wall time.Duration) {
	c0, _ := procCPU(pid)
	t0 := time.Now()
	return func() (time.Duration, time.Duration) {
		c, _ := procCPU(pid)
		return c - c0, time.Since(t0)
	}
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "?"
}
