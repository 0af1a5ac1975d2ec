// Command ha proves credport through a failover of its PostgreSQL primary: it builds a
// pg_auto_failover formation (a monitor, two data nodes with synchronous replication and a
// pgbouncer per node) in a scratch folder, runs two `credport serve` replicas under import and
// read load, kills the primary, and checks that nothing acknowledged was lost, no answer was a
// 500, imports resumed within 15 s, both replicas serve again, and a bulk `credport import`
// running across the failover completes. It runs once against the data nodes directly and once
// through the pgbouncers. `make test-ha` runs it as root (ha/test-ha.sh).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"
)

func main() {
	credport := flag.String("credport", "bin/credport", "the credport binary")
	keep := flag.Bool("keep", false, "keep the scratch folder (logs) afterwards")
	after := flag.Duration("after", 20*time.Second, "how long the load runs after the kill")
	flag.Parse()
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	bin, err := filepath.Abs(*credport)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, bin, *keep, *after); err != nil {
		log.Printf("FAIL: %v", err)
		stop()
		os.Exit(1)
	}
	log.Print("PASS")
}

func run(ctx context.Context, bin string, keep bool, after time.Duration) (err error) {
	started := time.Now()
	dir, err := os.MkdirTemp("", "credport-ha-")
	if err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	f, err := newFormation(dir)
	if err != nil {
		return err
	}
	defer func() {
		f.down()
		if keep || err != nil {
			log.Printf("logs kept in %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	}()
	log.Printf("formation in %s: monitor :%d, data nodes :%d :%d, pgbouncers :%d :%d",
		dir, f.monitor.port, f.nodes[0].port, f.nodes[1].port, f.bports[0], f.bports[1])
	if err := f.up(ctx); err != nil {
		return err
	}
	log.Printf("formation up in %v", time.Since(started).Round(100*time.Millisecond))

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	c := &cluster{bin: bin, dir: dir, encKey: base64.StdEncoding.EncodeToString(key)}
	direct := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/credport?target_session_attrs=read-write",
		f.nodes[0].port, f.nodes[1].port)
	bounced := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/credport?target_session_attrs=read-write&default_query_exec_mode=exec",
		f.bports[0], f.bports[1])
	// migrate takes a session-level advisory lock: it connects to the nodes directly.
	if err := c.setup(ctx, direct); err != nil {
		return err
	}
	var failed []string
	for i, sc := range []struct{ name, url string }{{"direct", direct}, {"pgbouncer", bounced}} {
		if i > 0 {
			// The killed node rejoins as a standby; the next scenario kills the new primary.
			if err := f.rejoin(ctx); err != nil {
				return err
			}
		}
		res, err := c.scenario(ctx, f, sc.name, sc.url, after)
		if err != nil {
			return fmt.Errorf("%s: %w", sc.name, err)
		}
		res.print()
		if problems := res.problems(); len(problems) > 0 {
			for _, p := range problems {
				failed = append(failed, sc.name+": "+p)
			}
		}
	}
	log.Printf("total %v", time.Since(started).Round(100*time.Millisecond))
	if len(failed) > 0 {
		return fmt.Errorf("%d checks failed: %q", len(failed), failed)
	}
	return nil
}

// rejoin restarts the keeper of the node that was killed and waits until it is the synchronous
// standby of the new primary.
func (f *formation) rejoin(ctx context.Context) error {
	start := time.Now()
	mon, err := f.monitorDB(ctx)
	if err != nil {
		return err
	}
	defer mon.Close()
	want := map[string]string{}
	for _, n := range f.nodes {
		if _, running := f.keepers[n.pgdata]; !running {
			if err := f.runKeeper(n); err != nil {
				return err
			}
			want[n.name] = "secondary"
		} else {
			want[n.name] = "primary"
		}
	}
	if err := f.waitStates(ctx, mon, want, 90*time.Second); err != nil {
		return err
	}
	log.Printf("killed node back as standby in %v", time.Since(start).Round(100*time.Millisecond))
	return nil
}
