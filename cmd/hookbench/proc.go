package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// procSample is a process's CPU time and memory, read from /proc.
type procSample struct {
	cpu     time.Duration // user + system
	rssKiB  int64
	peakKiB int64 // VmHWM: the peak resident set since start
}

// clockTick is USER_HZ, 100 on every Linux this runs on.
const clockTick = 100

func readProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	// Fields after the command name in parentheses; utime and stime are the
	// 14th and 15th fields of the whole line.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return s, fmt.Errorf("short /proc/%d/stat", pid)
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	s.cpu = time.Duration(utime+stime) * time.Second / clockTick
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			s.rssKiB = kib(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			s.peakKiB = kib(v)
		}
	}
	return s, nil
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n
}

// procWatch samples a process over a run: CPU used and the peak RSS seen.
type procWatch struct {
	pid   int
	start procSample
	at    time.Time
}

func watchProc(pid int) *procWatch {
	if pid == 0 {
		return nil
	}
	s, err := readProc(pid)
	if err != nil {
		return nil
	}
	return &procWatch{pid: pid, start: s, at: time.Now()}
}

// serverStats is the process under test's share of a run.
type serverStats struct {
	CPUPercent float64 `json:"cpu_percent"` // 100 = one core busy
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

func (w *procWatch) stop() *serverStats {
	if w == nil {
		return nil
	}
	s, err := readProc(w.pid)
	if err != nil {
		return nil
	}
	elapsed := time.Since(w.at)
	return &serverStats{
		CPUPercent: 100 * float64(s.cpu-w.start.cpu) / float64(elapsed),
		PeakRSSMiB: float64(s.peakKiB) / 1024,
	}
}
