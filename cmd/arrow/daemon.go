package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/arrowsys/arrow/api/client"
	"github.com/arrowsys/arrow/daemon"
	"github.com/arrowsys/arrow/dataroot"
	"github.com/arrowsys/arrow/dockerapi"
	"github.com/arrowsys/arrow/function"
	"github.com/arrowsys/arrow/image/store"
	"github.com/arrowsys/arrow/shim"
)

// socketPath is the daemon's API socket: --socket, $ARROW_SOCKET,
// /run/arrow/arrow.sock as root, else in the user's runtime directory.
func (g *globals) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	if s := os.Getenv("ARROW_SOCKET"); s != "" {
		return s
	}
	if os.Geteuid() == 0 {
		return "/run/arrow/arrow.sock"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "arrow", "arrow.sock")
	}
	return filepath.Join(os.TempDir(), "arrow-"+strconv.Itoa(os.Geteuid()), "arrow.sock")
}

func newDaemonCmd(g *globals) *cobra.Command {
	var (
		cgroupParent string
		logMaxSize   string
		logMaxFiles  int
		metricsAddr  string
		overhead     int
		tlsListen    string
		tlsCert      string
		tlsKey       string
		tlsCA        string
		poolSize     int
		maxSpares    int
		configFile   string
		allowPaths   []string
		crashAt      string
		dockerSocket string
		tlsDocker    bool
		fnAddr       string
	)
	cmd := &cobra.Command{
		Use:   "daemon",
		Short: "Run arrowd, the service that owns detached arrows",
		Long: `Run arrowd in the foreground: it serves the API on --socket, runs each
detached arrow under a supervisor process of its own, keeps their state and
logs under the data root, and applies their restart policies.

Stopping arrowd (SIGTERM, SIGINT, or kill -9) does not stop the arrows: the
next arrowd on the same data root takes them over. 'arrow run -d' and the
other commands that need arrowd start one when none answers.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			maxSize, err := parseSize(logMaxSize)
			if err != nil {
				return fmt.Errorf("--log-max-size: %w", err)
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			hostPaths, err := loadHostPathPolicy(configFile, cmd.Flags().Changed("config"), allowPaths)
			if err != nil {
				return err
			}
			sock := g.socketPath()
			d, err := daemon.New(daemon.Config{
				Root: g.dataRoot(), RunDir: filepath.Dir(sock), Exe: exe, Version: version,
				Log: os.Stderr, CgroupParent: cgroupParent, BridgeNetworks: true,
				HostPaths:  hostPaths,
				LogMaxSize: maxSize, LogMaxFiles: logMaxFiles, VMOverheadMiB: overhead,
				PoolSize: poolSize, MaxSpares: maxSpares, CrashAt: crashAt,
			})
			if err != nil {
				return err
			}
			defer d.Close()
			ln, err := daemon.Listen(sock)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			// Functions: a front end over the same daemon, whose
			// endpoints join its API.
			fns, err := function.New(function.Options{Backend: d, Root: g.dataRoot(), Registry: d.Registry(), Log: os.Stderr})
			if err != nil {
				return err
			}
			defer fns.Close()
			arrowAPI := withFunctions(d.Handler(), fns)
			if fnAddr != "" {
				fln, err := net.Listen("tcp", fnAddr)
				if err != nil {
					return fmt.Errorf("--functions-addr: %w", err)
				}
				fsrv := &http.Server{Handler: fns.InvokeHandler(), ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = fsrv.Serve(fln) }()
				defer fsrv.Close()
				fmt.Fprintf(os.Stderr, "arrowd: serving functions on http://%s/function/NAME\n", fln.Addr())
			}
			// The Docker Engine API: a front end over the same daemon,
			// on its own socket with the same rules.
			docker := dockerapi.New(dockerapi.Options{
				Backend: d, Version: version, Root: g.dataRoot(), Log: os.Stderr,
				Images: func() (*store.Store, error) { return store.Open(dataroot.Root(g.dataRoot()).Images()) },
			})
			if dockerSocket == "" {
				dockerSocket = filepath.Join(filepath.Dir(sock), "docker.sock")
			}
			if dockerSocket != "none" {
				dln, err := daemon.Listen(dockerSocket)
				if err != nil {
					return fmt.Errorf("--docker-socket: %w", err)
				}
				go func() { _ = d.ServeHandler(ctx, dln, docker) }()
				fmt.Fprintf(os.Stderr, "arrowd: serving the Docker Engine API on %s\n", dockerSocket)
			}
			if metricsAddr != "" {
				mln, err := net.Listen("tcp", metricsAddr)
				if err != nil {
					return fmt.Errorf("--metrics-addr: %w", err)
				}
				mux := http.NewServeMux()
				mux.Handle("GET /metrics", promhttp.HandlerFor(d.Registry(), promhttp.HandlerOpts{}))
				msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
				go func() { _ = msrv.Serve(mln) }()
				defer msrv.Close()
			}
			if tlsListen != "" {
				tln, err := daemon.ListenTLS(tlsListen, tlsCert, tlsKey, tlsCA)
				if err != nil {
					return fmt.Errorf("--tls-listen: %w", err)
				}
				h := arrowAPI
				if tlsDocker {
					h = withDocker(h, docker)
				}
				go func() { _ = d.ServeHandler(ctx, tln, h) }()
				fmt.Fprintf(os.Stderr, "arrowd: also serving %s (mutual TLS)\n", tln.Addr())
			}
			fmt.Fprintf(os.Stderr, "arrowd %s: serving %s (data root %s)\n", version, sock, g.dataRoot())
			return d.ServeHandler(ctx, ln, arrowAPI)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cgroupParent, "cgroup-parent", "arrow", "cgroup under which each arrow's VM gets its own (empty: no cgroups)")
	f.StringVar(&logMaxSize, "log-max-size", "10M", "rotate an arrow's log at this size")
	f.IntVar(&logMaxFiles, "log-max-files", 3, "log files kept per arrow, the current one included")
	f.IntVar(&overhead, "vm-overhead", daemon.DefaultVMOverheadMiB, "MiB allowed to each VM's QEMU on top of --memory in its cgroup limit")
	f.IntVar(&poolSize, "pool-size", 1, "spare VMs (warmed clones of a template) kept ready for each machine arrows were started with, at least (more while runs took more in the last 30 s); 0: only those 'arrow template warm --count' asks for")
	f.IntVar(&maxSpares, "max-spares", daemon.DefaultMaxSpares, "spare VMs kept in all")
	f.StringVar(&metricsAddr, "metrics-addr", "", "also serve Prometheus metrics on this TCP address (e.g. 127.0.0.1:9323); always at /metrics on the socket")
	f.StringVar(&tlsListen, "tls-listen", "", "also serve the API on this TCP address, with mutual TLS only")
	f.StringVar(&tlsCert, "tls-cert", "", "the daemon's TLS certificate (PEM)")
	f.StringVar(&tlsKey, "tls-key", "", "the key of --tls-cert (PEM)")
	f.StringVar(&dockerSocket, "docker-socket", "", "serve the Docker Engine API on this socket (default: docker.sock beside --socket; \"none\": not at all)")
	f.StringVar(&fnAddr, "functions-addr", "", "also serve function invocations, POST /function/NAME, on this TCP address (e.g. 127.0.0.1:8080); anyone who reaches it may invoke every function")
	f.BoolVar(&tlsDocker, "tls-docker", false, "also serve the Docker Engine API on --tls-listen (paths outside /v1/ and /metrics)")
	f.StringVar(&tlsCA, "tls-ca", "", "CA certificate (PEM) that must have signed clients' certificates")
	f.StringVar(&configFile, "config", daemon.DefaultConfigFile, "arrowd's configuration file (JSON: {\"allow_host_paths\": [...]}); the default need not exist")
	f.StringArrayVar(&allowPaths, "allow-host-path", nil, "a host directory under which clients other than root may name host paths (volumes, includes, rootfs, kernel, image paths); repeatable, added to the configuration's allow_host_paths")
	// For tests of crash recovery only: the daemon kills itself at a
	// failpoint of its start of a run.
	f.StringVar(&crashAt, "crash-at", "", "testing only: SIGKILL arrowd at this failpoint")
	_ = f.MarkHidden("crash-at")
	return cmd
}

// loadHostPathPolicy builds arrowd's host-path policy from its
// configuration file (which must exist when named explicitly) and the
// --allow-host-path flags.
func loadHostPathPolicy(file string, explicit bool, flags []string) (daemon.HostPathPolicy, error) {
	fc, err := daemon.LoadConfigFile(file, explicit)
	if err != nil {
		return daemon.HostPathPolicy{}, err
	}
	for _, p := range flags {
		if !filepath.IsAbs(p) || strings.IndexByte(p, 0) >= 0 {
			return daemon.HostPathPolicy{}, fmt.Errorf("--allow-host-path %q: want an absolute path", p)
		}
	}
	allow := append(append([]string{}, fc.AllowHostPaths...), flags...)
	if len(allow) == 0 {
		fmt.Fprintln(os.Stderr, "arrowd: clients other than root may name no host path (see --allow-host-path)")
	} else {
		fmt.Fprintf(os.Stderr, "arrowd: clients other than root may name host paths within %s\n", strings.Join(allow, ", "))
	}
	return daemon.HostPathPolicy{
		Allow:   allow,
		Setting: fmt.Sprintf("the allow_host_paths of %s or --allow-host-path", file),
	}, nil
}

// newShimCmd is the supervisor of one detached arrow, started by arrowd.
func newShimCmd() *cobra.Command {
	var spare bool
	cmd := &cobra.Command{
		Use:    "shim DIR",
		Short:  "Supervise one detached arrow (started by arrowd)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctl, err := shim.ControlFile()
			if err != nil {
				return err
			}
			if spare {
				return shim.ServeSpare(cmd.Context(), args[0], ctl)
			}
			return shim.Serve(cmd.Context(), args[0], ctl)
		},
	}
	cmd.Flags().BoolVar(&spare, "spare", false, "hold a spare VM for arrowd's pool until an arrow claims it (DIR holds spare.json)")
	return cmd
}

// connect returns a client of the daemon, starting one when none answers.
func (g *globals) connect(ctx context.Context) (*client.Client, error) {
	sock := g.socketPath()
	// Whoever owns or can write the socket's directory could answer in
	// arrowd's place (and read every file a request includes): refuse
	// such a directory. One that does not exist yet arrowd creates.
	if err := daemon.CheckRuntimeDir(filepath.Dir(sock)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	c := client.New(sock)
	if err := c.Ping(ctx); err == nil {
		return c, nil
	} else if !errors.Is(err, client.ErrUnreachable) {
		return nil, err
	}
	if err := g.startDaemon(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := c.Ping(ctx)
		if err == nil {
			return c, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("started arrowd, but it does not answer on %s (see %s): %w", sock, dataroot.Root(g.dataRoot()).DaemonLog(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startDaemon starts `arrow daemon` in the background, detached from the
// terminal, logging to arrowd.log in the data root.
func (g *globals) startDaemon() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	root := g.dataRoot()
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(dataroot.Root(root).DaemonLog(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(exe, "--root", root, "--socket", g.socketPath(), "daemon")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start arrowd: %w", err)
	}
	// Not waited for: it outlives this command. Its exit is reaped by
	// init once this process ends.
	return cmd.Process.Release()
}

// parseSize parses a byte count with an optional K, M or G suffix (powers
// of 1024).
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "K"), strings.HasSuffix(s, "k"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"), strings.HasSuffix(s, "m"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(s, "G"), strings.HasSuffix(s, "g"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 1 || n > 1<<40/mult {
		return 0, fmt.Errorf("%q: want a size such as 512K, 10M or 1G", s)
	}
	return n * mult, nil
}

// withDocker serves arrowd's API under /v1/ and /metrics, and the Docker
// Engine API (whose versioned paths are /v1.NN/...) everywhere else: one
// TLS listener for both.
func withDocker(arrowAPI, docker http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/") || r.URL.Path == "/metrics" {
			arrowAPI.ServeHTTP(w, r)
			return
		}
		docker.ServeHTTP(w, r)
	})
}

// withFunctions serves the functions' endpoints (package function) in
// front of the daemon's API.
func withFunctions(arrowAPI http.Handler, fns *function.Manager) http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range fns.Routes() {
		mux.Handle(pattern, h)
	}
	mux.Handle("/", arrowAPI)
	return mux
}
