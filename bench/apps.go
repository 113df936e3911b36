//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/api"
	"github.com/arrowsys/arrow/api/client"
)

// appResult is one service's throughput natively and in an arrow.
type appResult struct {
	name, unit    string
	native, arrow float64
}

// benchApps measures services a distribution ships, run as Debian ships
// them: requests per second of nginx (wrk), redis (redis-benchmark) and
// PostgreSQL (pgbench) in an arrow started with `arrow run -d --service`,
// against the same server and configuration run natively on the host in
// the same run; and the time from `arrow run -d --service` to ready
// (the command returns once the service is ready) for a cold boot, a
// template clone and a spare from arrowd's pool.
//
// PostgreSQL runs from an image built with `arrow image build --apt
// postgresql` (cached once built) on a named volume, as a user would; the
// host's own cluster is not touched.
func benchApps(ctx context.Context, arrowBin string, duration time.Duration, runs int) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if os.Geteuid() != 0 {
		return errors.New("-apps runs the host's service units through arrowd, which only root may do")
	}
	for _, tool := range []string{"wrk", "nginx", "redis-server", "redis-benchmark", "pgbench", "psql"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (setup.sh installs it)", tool)
		}
	}
	pgBin, err := postgresBin()
	if err != nil {
		return err
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	b, work, done, err := newDaemonBench(su.arrow, su.accel.Name, "arrow-bench-apps-")
	if err != nil {
		return err
	}
	defer done()
	defer func() { err = errors.Join(err, b.cleanup()) }()
	// No spares unless asked: a clone must be a clone.
	b.daemonArgs = []string{"--pool-size", "0"}
	if err := b.startDaemon(ctx); err != nil {
		return err
	}

	var results []appResult
	// nginx: Debian's welcome page.
	nginxRPS := func(port int) (float64, error) {
		rps, _, err := wrk(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port), duration, 16)
		return rps, err
	}
	native, err := b.nativeNginx(ctx, work, nginxRPS)
	if err != nil {
		return fmt.Errorf("nginx natively: %w", err)
	}
	inArrow, err := b.serviceRPS(ctx, "nginx", 80, nil, nginxRPS)
	if err != nil {
		return fmt.Errorf("nginx in an arrow: %w", err)
	}
	results = append(results, appResult{"nginx (wrk, 16 connections, welcome page)", "requests/s", native, inArrow})

	// redis: Debian's redis.conf.
	redisRPS := func(port int) (float64, error) { return redisBenchmark(ctx, port) }
	native, err = b.nativeRedis(ctx, work, redisRPS)
	if err != nil {
		return fmt.Errorf("redis natively: %w", err)
	}
	inArrow, err = b.serviceRPS(ctx, "redis-server", 6379, nil, redisRPS)
	if err != nil {
		return fmt.Errorf("redis in an arrow: %w", err)
	}
	results = append(results, appResult{"redis (redis-benchmark -t set,get, 5 clients)", "requests/s", native, inArrow})

	// PostgreSQL: the cluster of an --apt image, on a named volume.
	pgTPS := func(port int, password string) (float64, error) { return pgbench(ctx, port, password, duration) }
	native, err = b.nativePostgres(ctx, work, pgBin, pgTPS)
	if err != nil {
		return fmt.Errorf("PostgreSQL natively: %w", err)
	}
	inArrow, err = b.arrowPostgres(ctx, pgTPS)
	if err != nil {
		return fmt.Errorf("PostgreSQL in an arrow: %w", err)
	}
	results = append(results, appResult{"PostgreSQL (pgbench -s 1, 2 clients)", "transactions/s", native, inArrow})

	starts, err := b.serviceStarts(ctx, "nginx", 80, runs)
	if err != nil {
		return err
	}

	fmt.Printf("Debian's services, natively and in an arrow (accelerator %s; %s); load for %v each\n\n", su.accel.Name, su.accel.Reason, duration)
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "| service\t| unit\t| native\t| arrow\t| arrow ÷ native\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range results {
		fmt.Fprintf(tw, "| %s\t| %s\t| %.0f\t| %.0f\t| %.3f×\t|\n", r.name, r.unit, r.native, r.arrow, r.arrow/r.native)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Printf("\n`arrow run -d --service nginx` until it returns (the service is ready), median of %d\n\n", runs)
	tw = tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "| start\t| median\t| min – max\t| ÷ cold\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|")
	cold := medianDuration(starts["cold"])
	for _, mode := range []string{"cold", "clone", "spare"} {
		lo, hi := minMax(starts[mode])
		m := medianDuration(starts[mode])
		fmt.Fprintf(tw, "| %s\t| %.3f s\t| %.3f – %.3f s\t| %.2f×\t|\n", mode, m.Seconds(), lo.Seconds(), hi.Seconds(), float64(m)/float64(cold))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("\nThe arrows have the default machine (one vCPU); the native servers the whole host.")
	if su.accel.Name == "tcg" {
		fmt.Println("Under TCG every guest instruction is emulated: TCG dominates the ratios, not Arrow's I/O path.")
	}
	return nil
}

// postgresBin is the directory of the host's PostgreSQL server programs.
func postgresBin() (string, error) {
	m, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(m) == 0 {
		return "", errors.New("no PostgreSQL server under /usr/lib/postgresql (setup.sh installs postgresql)")
	}
	return filepath.Dir(m[len(m)-1]), nil
}

// serviceRPS runs the host's unit in an arrow with its port published on
// a free loopback port, measures it with load, and removes it.
func (b *daemonBench) serviceRPS(ctx context.Context, unit string, guestPort int, extra []string, load func(port int) (float64, error)) (float64, error) {
	port, err := freeTCPPort()
	if err != nil {
		return 0, err
	}
	name := "bench-" + unit
	args := append([]string{"run", "-d", "--name", name, "--service", unit, "-p", fmt.Sprintf("127.0.0.1:%d:%d", port, guestPort)}, extra...)
	if _, _, err := b.cli(ctx, args...); err != nil {
		return 0, err
	}
	defer func() { _ = b.remove(context.WithoutCancel(ctx), name) }()
	return load(port)
}

// serviceStarts times `arrow run -d --service unit` to its return, cold,
// cloned and from a spare, runs times each (after one untimed round that
// builds the template).
func (b *daemonBench) serviceStarts(ctx context.Context, unit string, guestPort, runs int) (map[string][]time.Duration, error) {
	out := map[string][]time.Duration{}
	start := func(mode string, round int) error {
		port, err := freeTCPPort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("start-%s-%d", mode, round)
		args := []string{"run", "-d", "--name", name, "--service", unit, "-p", fmt.Sprintf("127.0.0.1:%d:%d", port, guestPort)}
		if mode == "cold" {
			args = append(args, "--cold")
		}
		if mode == "spare" {
			if err := b.awaitSpare(ctx); err != nil {
				return err
			}
		}
		_, d, err := b.cli(ctx, args...)
		if err != nil {
			return err
		}
		defer func() { _ = b.remove(context.WithoutCancel(ctx), name) }()
		a, err := client.New(b.socket).Inspect(ctx, name)
		if err != nil {
			return err
		}
		if got := startKind(a); got != mode {
			return fmt.Errorf("%s: wanted a %s start, arrowd reports %s", name, mode, got)
		}
		if round >= 0 {
			out[mode] = append(out[mode], d)
		}
		return nil
	}
	for round := -1; round < runs; round++ {
		for _, mode := range []string{"cold", "clone"} {
			if err := start(mode, round); err != nil {
				return nil, err
			}
		}
	}
	// Spares of the default machine, which the service's arrow has.
	if _, _, err := b.cli(ctx, "template", "warm", "--count", "1"); err != nil {
		return nil, err
	}
	defer func() { _, _, _ = b.cli(context.WithoutCancel(ctx), "template", "warm", "--count", "0") }()
	for round := 0; round < runs; round++ {
		if err := start("spare", round); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// startKind says how arrowd started a: "cold", "clone" or "spare".
func startKind(a api.Arrow) string {
	switch {
	case a.Spare:
		return "spare"
	case a.Template == "":
		return "cold"
	}
	return "clone"
}

// awaitSpare waits until arrowd's pool holds a ready spare.
func (b *daemonBench) awaitSpare(ctx context.Context) error {
	c := client.New(b.socket)
	deadline := time.Now().Add(readyTimeout)
	for {
		entries, err := c.Pool(ctx)
		if err != nil {
			return err
		}
		for _, e := range entries {
			if e.Ready > 0 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no spare ready after %v", readyTimeout)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// nativeNginx runs the host's nginx with Debian's site on a free loopback
// port, its files and logs in work, and measures it.
func (b *daemonBench) nativeNginx(ctx context.Context, work string, load func(int) (float64, error)) (float64, error) {
	port, err := freeTCPPort()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(work, "nginx")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	conf := fmt.Sprintf(`worker_processes auto;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log;
events { worker_connections 768; }
http {
	include /etc/nginx/mime.types;
	sendfile on;
	access_log %[1]s/access.log;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	server {
		listen 127.0.0.1:%[2]d;
		root /var/www/html;
		index index.html index.htm index.nginx-debian.html;
	}
}
`, dir, port)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return 0, err
	}
	return b.native(ctx, []string{"nginx", "-c", confPath, "-g", "daemon off;"}, port, func() (float64, error) {
		if err := awaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil {
			return 0, err
		}
		return load(port)
	})
}

// nativeRedis runs the host's redis-server with Debian's redis.conf on a
// free loopback port, its data in work.
func (b *daemonBench) nativeRedis(ctx context.Context, work string, load func(int) (float64, error)) (float64, error) {
	port, err := freeTCPPort()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(work, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	argv := []string{"redis-server", "/etc/redis/redis.conf", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--daemonize", "no", "--supervised", "no", "--dir", dir, "--pidfile", filepath.Join(dir, "redis.pid"), "--logfile", ""}
	return b.native(ctx, argv, port, func() (float64, error) {
		if err := awaitTCP(ctx, port); err != nil {
			return 0, err
		}
		return load(port)
	})
}

// nativePostgres makes a cluster in work and runs the host's PostgreSQL
// server on it, as the postgres user, on a free loopback port.
func (b *daemonBench) nativePostgres(ctx context.Context, work, bin string, load func(int, string) (float64, error)) (float64, error) {
	port, err := freeTCPPort()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(work, "pg")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return 0, err
	}
	if err := os.Chmod(work, 0o755); err != nil {
		return 0, err
	}
	if out, err := exec.CommandContext(ctx, "chown", "postgres:postgres", dir).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("chown: %w: %s", err, out)
	}
	initdb := exec.CommandContext(ctx, "runuser", "-u", "postgres", "--", filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "--auth=trust")
	if out, err := initdb.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("initdb: %w: %s", err, tail(out, 2000))
	}
	argv := []string{"runuser", "-u", "postgres", "--", filepath.Join(bin, "postgres"), "-D", filepath.Join(dir, "data"),
		"-p", strconv.Itoa(port), "-k", dir, "-c", "listen_addresses=127.0.0.1"}
	return b.native(ctx, argv, port, func() (float64, error) {
		if err := awaitTCP(ctx, port); err != nil {
			return 0, err
		}
		return load(port, "")
	})
}

// arrowPostgres builds (or finds cached) an image of Debian's postgresql
// package and runs its cluster unit on a named volume, with a password
// set through arrow exec, and measures it.
func (b *daemonBench) arrowPostgres(ctx context.Context, load func(int, string) (float64, error)) (float64, error) {
	buildCtx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	defer cancel()
	build := exec.CommandContext(buildCtx, b.arrow, "image", "build", "--apt", "postgresql", "--name", "bench-pg")
	build.Env = b.env
	if out, err := build.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("arrow image build --apt postgresql: %w: %s", err, tail(out, 2000))
	}
	if _, _, err := b.cli(ctx, "volume", "create", "bench-pgdata"); err != nil {
		return 0, err
	}
	defer func() { _, _, _ = b.cli(context.WithoutCancel(ctx), "volume", "rm", "bench-pgdata") }()
	port, err := freeTCPPort()
	if err != nil {
		return 0, err
	}
	const name, password = "bench-pg", "bench"
	if _, _, err := b.cli(ctx, "run", "-d", "--name", name, "-m", "512M", "--service", "postgresql@15-main",
		"-v", "bench-pgdata:/var/lib/postgresql", "-p", fmt.Sprintf("127.0.0.1:%d:5432", port), "bench-pg"); err != nil {
		return 0, err
	}
	defer func() { _ = b.remove(context.WithoutCancel(ctx), name) }()
	if _, _, err := b.cli(ctx, "exec", "-u", "postgres", name, "psql", "-c", "ALTER USER postgres PASSWORD '"+password+"'"); err != nil {
		return 0, err
	}
	return load(port, password)
}

// native runs argv on the host, measures it with load, and stops it.
func (b *daemonBench) native(ctx context.Context, argv []string, port int, load func() (float64, error)) (float64, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var errb strings.Builder
	cmd.Stdout, cmd.Stderr = &errb, &errb
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}()
	v, err := load()
	if err != nil {
		return 0, fmt.Errorf("%w (server output: %s)", err, tail([]byte(errb.String()), 1000))
	}
	return v, nil
}

// awaitTCP waits until something accepts connections on the loopback port.
func awaitTCP(ctx context.Context, port int) error {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d does not answer: %w", port, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

var redisRate = regexp.MustCompile(`^"(SET|GET)","([0-9.]+)"`)

// redisBenchmark runs redis-benchmark's SET and GET against port and
// returns their mean requests per second.
func redisBenchmark(ctx context.Context, port int) (float64, error) {
	if err := awaitTCP(ctx, port); err != nil {
		return 0, err
	}
	cmd := exec.CommandContext(ctx, "redis-benchmark", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "set,get", "-n", "5000", "-c", "5", "--csv")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("redis-benchmark: %w: %s", err, tail(out, 1000))
	}
	var sum float64
	var n int
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if m := redisRate.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[2], 64)
			sum += v
			n++
		}
	}
	if n != 2 {
		return 0, fmt.Errorf("redis-benchmark: no SET and GET figures in %s", tail(out, 1000))
	}
	return sum / 2, nil
}

var pgbenchTPS = regexp.MustCompile(`tps = ([0-9.]+)`)

// pgbench initialises pgbench's tables (scale 1) on the server at port
// and runs its default transaction for d with two clients.
func pgbench(ctx context.Context, port int, password string, d time.Duration) (float64, error) {
	env := append(os.Environ(), "PGHOST=127.0.0.1", "PGPORT="+strconv.Itoa(port), "PGUSER=postgres", "PGDATABASE=postgres")
	if password != "" {
		env = append(env, "PGPASSWORD="+password)
	}
	if err := awaitTCP(ctx, port); err != nil {
		return 0, err
	}
	initCmd := exec.CommandContext(ctx, "pgbench", "-i", "-s", "1", "-q")
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("pgbench -i: %w: %s", err, tail(out, 1000))
	}
	secs := max(1, int(d.Seconds()))
	cmd := exec.CommandContext(ctx, "pgbench", "-c", "2", "-T", strconv.Itoa(secs))
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w: %s", err, tail(out, 1000))
	}
	m := pgbenchTPS.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench: no tps in %s", tail(out, 1000))
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
