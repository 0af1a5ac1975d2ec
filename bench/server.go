package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// buildServer compiles the credport binary of the module the benchmark belongs to.
func buildServer(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("run the benchmark inside the credport module")
	}
	bin := filepath.Join(dir, "credport")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/credport")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/credport: %w\n%s", err, out)
	}
	return bin, nil
}

// cliRunner runs credport commands against the benchmark's database.
type cliRunner struct {
	bin, databaseURL, encryptionKey string
}

// run runs one command and returns its standard output, trimmed.
func (c cliRunner) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.bin, append(args, "--database", c.databaseURL)...)
	cmd.Env = serverEnv(c.encryptionKey)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("credport %s: %w\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), nil
}

// serverEnv is the environment of credport processes: this one's, without any credport setting
// that would change what is measured, plus the encryption key.
func serverEnv(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CREDPORT_") {
			env = append(env, kv)
		}
	}
	// The webhook receiver of --webhooks listens on a loopback address.
	return append(env, "CREDPORT_ENCRYPTION_KEY="+key, "CREDPORT_LOG_FORMAT=json", "CREDPORT_OUTBOUND_ALLOW_PRIVATE=true")
}

// server is a credport serve process.
type server struct {
	cmd     *exec.Cmd
	baseURL string
	logPath string
	exited  chan struct{}
	waitErr error
}

// startServer starts credport serve on a free local port and waits until GET /ready answers 200.
func startServer(ctx context.Context, bin, dir, databaseURL, key string) (*server, error) {
	addr, err := freeAddress()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, "serve", "--listen", addr, "--database", databaseURL)
	cmd.Env = serverEnv(key)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start credport serve: %w", err)
	}
	s := &server{cmd: cmd, baseURL: "http://" + addr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()

	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.baseURL+"/ready", nil)
		if err != nil {
			return nil, err
		}
		if res, err := client.Do(req); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("credport serve exited before it was ready: %v\n%s", s.waitErr, s.logTail())
		case <-ctx.Done():
			_, _ = s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_, _ = s.stop()
			return nil, fmt.Errorf("credport serve not ready after 30s\n%s", s.logTail())
		}
	}
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop reads the process's peak memory, then sends SIGTERM and waits for a clean exit.
func (s *server) stop() (serverStats, error) {
	var stats serverStats
	if kb, err := procStatusKB(s.pid(), "VmHWM"); err == nil {
		stats.PeakRSSMiB = float64(kb) / 1024
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return stats, fmt.Errorf("stop credport serve: %w", err)
	}
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return stats, fmt.Errorf("credport serve did not stop within 15s of SIGTERM\n%s", s.logTail())
	}
	if s.waitErr != nil {
		return stats, fmt.Errorf("credport serve: %v\n%s", s.waitErr, s.logTail())
	}
	return stats, nil
}

// logTail is the end of the server's log, for error messages.
func (s *server) logTail() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return ""
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

func freeAddress() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// procStatusKB reads one "Name: N kB" line of /proc/<pid>/status.
func procStatusKB(pid int, name string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != name {
			continue
		}
		return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, name)
}

// clockTicks is USER_HZ, the unit of CPU times in /proc; it is 100 on every Linux platform Go
// supports.
const clockTicks = 100

// procCPU is the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields that follow it start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	// utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// hostCPU is the busy and total time of all CPUs since boot, from /proc/stat.
func hostCPU() (busy, total int64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return 0, 0, errors.New("empty /proc/stat")
	}
	fields := strings.Fields(sc.Text())
	if len(fields) < 5 || fields[0] != "cpu" {
		return 0, 0, errors.New("unexpected /proc/stat")
	}
	for i, f := range fields[1:] {
		if i >= 8 { // guest times are already counted in user and nice
			break
		}
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, 0, err
		}
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total, nil
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
