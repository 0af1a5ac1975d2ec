package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"
)

// pgBin is where Debian's postgresql-15 keeps its programs.
const pgBin = "/usr/lib/postgresql/15/bin"

// formation is a pg_auto_failover monitor and two data nodes, each with a pgbouncer in
// transaction pooling, every process run as the postgres OS user under one scratch folder.
type formation struct {
	dir     string
	monitor node
	nodes   [2]node
	// bouncers[i] fronts nodes[i].
	bouncers [2]*exec.Cmd
	bports   [2]int
	// keepers are the running `pg_autoctl run`, by data directory.
	keepers map[string]*exec.Cmd
	logs    *os.File
}

type node struct {
	name   string
	pgdata string
	port   int
}

// freePort asks the kernel for a port nobody listens on.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func newFormation(dir string) (*formation, error) {
	f := &formation{dir: dir, keepers: map[string]*exec.Cmd{}}
	var err error
	if f.logs, err = os.Create(filepath.Join(dir, "formation.log")); err != nil {
		return nil, err
	}
	ports := make([]int, 5)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, err
		}
	}
	f.monitor = node{name: "monitor", pgdata: filepath.Join(dir, "monitor"), port: ports[0]}
	for i := range f.nodes {
		f.nodes[i] = node{name: fmt.Sprintf("node%d", i+1), pgdata: filepath.Join(dir, fmt.Sprintf("node%d", i+1)), port: ports[1+i]}
		f.bports[i] = ports[3+i]
	}
	for _, sub := range []string{"xdg/config", "xdg/data", "xdg/run"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	return f, chownPostgres(dir)
}

// chownPostgres gives the folder to the postgres user, which every server runs as.
func chownPostgres(dir string) error {
	return exec.Command("chown", "-R", "postgres:postgres", dir).Run()
}

// asPostgres is a command run as the postgres OS user with the formation's XDG folders, so that
// pg_autoctl keeps its state in the scratch folder.
func (f *formation) asPostgres(args ...string) *exec.Cmd {
	env := []string{
		"XDG_CONFIG_HOME=" + filepath.Join(f.dir, "xdg/config"),
		"XDG_DATA_HOME=" + filepath.Join(f.dir, "xdg/data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(f.dir, "xdg/run"),
		"PATH=" + pgBin + ":/usr/sbin:/usr/bin:/sbin:/bin",
		"PG_CONFIG=" + pgBin + "/pg_config",
	}
	cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", "env"}, append(env, args...)...)...)
	cmd.Dir = f.dir
	cmd.Stdout, cmd.Stderr = f.logs, f.logs
	return cmd
}

func (f *formation) run(args ...string) error {
	fmt.Fprintf(f.logs, "\n$ %s\n", strings.Join(args, " "))
	if err := f.asPostgres(args...).Run(); err != nil {
		return fmt.Errorf("%s: %w (see %s)", strings.Join(args[:min(3, len(args))], " "), err, f.logs.Name())
	}
	return nil
}

// start runs a long-lived process in a session of its own.
func (f *formation) start(args ...string) (*exec.Cmd, error) {
	fmt.Fprintf(f.logs, "\n$ %s &\n", strings.Join(args, " "))
	cmd := f.asPostgres(args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd, cmd.Start()
}

// initdb makes a data directory with shared_buffers small enough for three instances on one
// machine: pg_auto_failover would size it at a quarter of the RAM each. A standby inherits it
// through pg_basebackup.
func (f *formation) initdb(n node) error {
	if err := f.run(pgBin+"/initdb", "--pgdata", n.pgdata, "--auth", "trust", "--username", "postgres", "--no-sync"); err != nil {
		return err
	}
	return appendTo(filepath.Join(n.pgdata, "postgresql.auto.conf"), "shared_buffers = '64MB'\nmax_connections = 200\nfsync = on\n")
}

func appendTo(path, text string) error {
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := fh.WriteString(text); err != nil {
		_ = fh.Close()
		return err
	}
	return fh.Close()
}

func (f *formation) monitorURL() string {
	return fmt.Sprintf("postgres://autoctl_node@127.0.0.1:%d/pg_auto_failover?sslmode=disable", f.monitor.port)
}

// up builds the formation: the monitor with test-tuned health checks, node1 as primary, node2 as
// its synchronous standby, and a pgbouncer per node.
func (f *formation) up(ctx context.Context) error {
	if err := f.initdb(f.monitor); err != nil {
		return err
	}
	if err := f.run("pg_autoctl", "create", "monitor", "--pgdata", f.monitor.pgdata, "--pgport", strconv.Itoa(f.monitor.port),
		"--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl"); err != nil {
		return err
	}
	if err := f.run("pg_autoctl", "config", "set", "--pgdata", f.monitor.pgdata, "postgresql.listen_addresses", "127.0.0.1"); err != nil {
		return err
	}
	if err := f.runKeeper(f.monitor); err != nil {
		return err
	}
	mon, err := waitDB(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pg_auto_failover?sslmode=disable", f.monitor.port))
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	defer mon.Close()
	for _, s := range []string{
		"health_check_period = 1000", "health_check_timeout = 1000", "health_check_max_retries = 1",
		"health_check_retry_delay = 500", "node_considered_unhealthy_timeout = 2000",
		"primary_demote_timeout = 3000", "startup_grace_period = 1000",
	} {
		if _, err := mon.ExecContext(ctx, "ALTER SYSTEM SET pgautofailover."+s); err != nil {
			return fmt.Errorf("monitor setting %s: %w", s, err)
		}
	}
	if _, err := mon.ExecContext(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	if err := f.initdb(f.nodes[0]); err != nil {
		return err
	}
	for i, n := range f.nodes {
		if err := f.run("pg_autoctl", "create", "postgres", "--pgdata", n.pgdata, "--pgport", strconv.Itoa(n.port),
			"--listen", "127.0.0.1", "--hostname", "127.0.0.1", "--name", n.name, "--dbname", "credport",
			"--monitor", f.monitorURL(), "--auth", "trust", "--no-ssl"); err != nil {
			return err
		}
		if err := f.run("pg_autoctl", "config", "set", "--pgdata", n.pgdata, "timeout.network_partition_timeout", "2"); err != nil {
			return err
		}
		if err := f.runKeeper(n); err != nil {
			return err
		}
		want := map[string]string{"node1": "single"}
		if i == 1 {
			want = map[string]string{"node1": "primary", "node2": "secondary"}
		}
		if err := f.waitStates(ctx, mon, want, 90*time.Second); err != nil {
			return err
		}
	}
	return f.startBouncers()
}

func (f *formation) runKeeper(n node) error {
	cmd, err := f.start("pg_autoctl", "run", "--pgdata", n.pgdata)
	if err != nil {
		return err
	}
	f.keepers[n.pgdata] = cmd
	return nil
}

// waitStates waits until every named node reports the given state and has it as its goal.
func (f *formation) waitStates(ctx context.Context, mon *sql.DB, want map[string]string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		got := map[string]string{}
		rows, err := mon.QueryContext(ctx, "SELECT nodename, reportedstate::text, goalstate::text FROM pgautofailover.node")
		if err == nil {
			for rows.Next() {
				var name, reported, goal string
				if rows.Scan(&name, &reported, &goal) == nil && reported == goal {
					got[name] = reported
				}
			}
			rows.Close()
		}
		ok := true
		for k, v := range want {
			ok = ok && got[k] == v
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("formation: states %v after %v, want %v (see %s)", got, limit, want, f.logs.Name())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// monitorDB opens the monitor's database.
func (f *formation) monitorDB(ctx context.Context) (*sql.DB, error) {
	return waitDB(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/pg_auto_failover?sslmode=disable", f.monitor.port))
}

func waitDB(ctx context.Context, url string) (*sql.DB, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := db.PingContext(pctx)
		cancel()
		if err == nil {
			return db, nil
		}
		if time.Now().After(deadline) {
			_ = db.Close()
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startBouncers starts a pgbouncer in transaction pooling in front of each data node.
func (f *formation) startBouncers() error {
	userlist := filepath.Join(f.dir, "userlist.txt")
	if err := os.WriteFile(userlist, []byte(`"postgres" ""`+"\n"), 0o644); err != nil {
		return err
	}
	for i, n := range f.nodes {
		sock := filepath.Join(f.dir, fmt.Sprintf("bouncer%d", i+1))
		if err := os.MkdirAll(sock, 0o755); err != nil {
			return err
		}
		ini := filepath.Join(f.dir, fmt.Sprintf("pgbouncer%d.ini", i+1))
		conf := fmt.Sprintf(`[databases]
credport = host=127.0.0.1 port=%d dbname=credport
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
auth_type = trust
auth_file = %s
pool_mode = transaction
max_client_conn = 500
default_pool_size = 40
query_wait_timeout = 5
server_connect_timeout = 2
server_login_retry = 1
ignore_startup_parameters = extra_float_digits
logfile = %s
`, n.port, f.bports[i], sock, userlist, filepath.Join(sock, "pgbouncer.log"))
		if err := os.WriteFile(ini, []byte(conf), 0o644); err != nil {
			return err
		}
		if err := chownPostgres(sock); err != nil {
			return err
		}
		cmd, err := f.start("pgbouncer", ini)
		if err != nil {
			return err
		}
		f.bouncers[i] = cmd
	}
	for _, p := range f.bports {
		db, err := waitDB(context.Background(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/credport?default_query_exec_mode=exec", p))
		if err != nil {
			return fmt.Errorf("pgbouncer on %d: %w", p, err)
		}
		_ = db.Close()
	}
	return nil
}

// primary is the data node that is not in recovery.
func (f *formation) primary(ctx context.Context) (node, error) {
	for _, n := range f.nodes {
		db, err := sql.Open("pgx", fmt.Sprintf("postgres://postgres@127.0.0.1:%d/credport?connect_timeout=2", n.port))
		if err != nil {
			continue
		}
		var standby bool
		err = db.QueryRowContext(ctx, "SELECT pg_is_in_recovery()").Scan(&standby)
		_ = db.Close()
		if err == nil && !standby {
			return n, nil
		}
	}
	return node{}, errors.New("no primary")
}

// kill stops a node as a machine's death would: SIGKILL to its keeper, every process under it
// and its postmaster (PostgreSQL's children start sessions of their own, so by PID).
func (f *formation) kill(n node) error {
	var pids []int
	if k := f.keepers[n.pgdata]; k != nil && k.Process != nil {
		pids = append(pids, descendants(k.Process.Pid)...)
	}
	if b, err := os.ReadFile(filepath.Join(n.pgdata, "postmaster.pid")); err == nil {
		first, _, _ := strings.Cut(string(b), "\n")
		if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		return fmt.Errorf("no process of %s to kill", n.name)
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if k := f.keepers[n.pgdata]; k != nil {
		_ = k.Wait()
		delete(f.keepers, n.pgdata)
	}
	return nil
}

// descendants is pid and every process under it, from /proc.
func descendants(pid int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so read after the last ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndex(s, ")")+1:])
		if len(fields) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(fields[1]); err == nil {
			children[ppid] = append(children[ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// down stops everything the formation started, by PID, and leaves no server running.
func (f *formation) down() {
	for i, b := range f.bouncers {
		if b != nil && b.Process != nil {
			for _, pid := range descendants(b.Process.Pid) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			_ = b.Wait()
			f.bouncers[i] = nil
		}
	}
	nodes := append([]node{}, f.nodes[:]...)
	nodes = append(nodes, f.monitor)
	for _, n := range nodes {
		if _, ok := f.keepers[n.pgdata]; ok {
			_ = f.run("pg_autoctl", "stop", "--pgdata", n.pgdata, "--immediate")
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		if k := f.keepers[n.pgdata]; k != nil {
			done := make(chan struct{})
			go func() { _ = k.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(time.Until(deadline)):
			}
		}
		// Whatever is left of it, keeper or PostgreSQL, by PID, and the sockets a kill leaves.
		_ = f.kill(n)
		for _, suffix := range []string{"", ".lock"} {
			_ = os.Remove(fmt.Sprintf("/var/run/postgresql/.s.PGSQL.%d%s", n.port, suffix))
		}
	}
	_ = f.logs.Close()
}
