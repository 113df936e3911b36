//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/arrowsys/arrow/vm"
)

// httpdSource is the server every placement runs: one static Go binary,
// natively and as the arrows' host program, so that only where it runs
// differs. It prints idleReady once it listens.
const httpdSource = `package main

import (
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http"
)

func main() {
	addr := flag.String("addr", "0.0.0.0:8000", "")
	flag.Parse()
	small := bytes.Repeat([]byte("a"), 1024)
	big := bytes.Repeat([]byte("0123456789abcdef"), 10<<20/16)
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write(small) })
	http.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		panic(err)
	}
	fmt.Println("ready")
	panic(http.Serve(ln, nil))
}
`

// netResult is what wrk measured for one placement.
type netResult struct {
	name     string
	rps      float64 // requests per second, 1 KiB responses
	transfer float64 // MiB/s downloading 10 MiB responses
}

// benchNetwork measures HTTP through published ports: natively on the
// host, in an arrow on QEMU's user-mode network, and in a detached arrow
// on a bridge network, each loaded with wrk on loopback for duration.
func benchNetwork(ctx context.Context, arrowBin string, duration time.Duration) (err error) {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is not installed (apt-get install wrk; setup.sh installs it)")
	}
	su, err := newSetup(arrowBin)
	if err != nil {
		return err
	}
	arrowBin, accel := su.arrow, su.accel
	// The bridge placement needs root and an arrowd of the benchmark's
	// own, which must not meet another arrowd's networks (see
	// foreignNetworkState): check before anything runs.
	bridge := os.Geteuid() == 0
	if bridge {
		if err := foreignNetworkState(); err != nil {
			return err
		}
	}
	b, work, done, err := newDaemonBench(arrowBin, accel.Name, "arrow-bench-net-")
	if err != nil {
		return err
	}
	defer done()
	defer func() {
		err = errors.Join(err, b.cleanup())
		// None were there when it began, so any now are the benchmark's.
		if bridge {
			if lerr := foreignNetworkState(); lerr != nil {
				err = errors.Join(err, fmt.Errorf("left behind: %w", lerr))
			}
		}
	}()

	httpd := filepath.Join(work, "httpd")
	if err := os.WriteFile(filepath.Join(work, "httpd.go"), []byte(httpdSource), 0o644); err != nil {
		return err
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", httpd, "httpd.go")
	build.Dir, build.Env = work, append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the server: %w\n%s", err, out)
	}

	var results []netResult
	measure := func(name string, port int) error {
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if err := awaitHTTP(ctx, url+"/"); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		rps, _, err := wrk(ctx, url+"/", duration, 16)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		_, mibs, err := wrk(ctx, url+"/big", duration, 2)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		results = append(results, netResult{name, rps, mibs})
		return nil
	}

	// Natively.
	port, err := freeTCPPort()
	if err != nil {
		return err
	}
	native, err := b.startForeground([]string{httpd, "-addr", "127.0.0.1:" + strconv.Itoa(port)})
	if err != nil {
		return err
	}
	if _, err := native.waitReady(ctx); err != nil {
		return err
	}
	if err := measure("native on the host", port); err != nil {
		return err
	}
	if err := b.stopForeground(native); err != nil {
		return err
	}

	// In an arrow on the user-mode network, jailed (as every run as root
	// is) and unjailed (--no-jail): the jail's cost is the ratio.
	for _, jailed := range []bool{true, false} {
		if port, err = freeTCPPort(); err != nil {
			return err
		}
		args := []string{arrowBin, "run", "--accel", accel.Name, "--cpus", "1", "-m", "256M",
			"-p", fmt.Sprintf("127.0.0.1:%d:8000", port)}
		name := "arrow, user-mode network (slirp), -p"
		if !jailed {
			args = append(args, "--no-jail")
			name += ", --no-jail"
		}
		user, err := b.startForeground(append(args, httpd))
		if err != nil {
			return err
		}
		if _, err := user.waitReady(ctx); err != nil {
			return err
		}
		if err := measure(name, port); err != nil {
			return err
		}
		if err := b.stopForeground(user); err != nil {
			return err
		}
	}

	// In a detached arrow on a bridge network.
	if bridge {
		if err := b.startDaemon(ctx); err != nil {
			return err
		}
		if _, _, err := b.cli(ctx, "network", "create", "benchnet"); err != nil {
			return err
		}
		// Before arrowd stops (deferred earlier, so run later): the
		// arrow goes first, as a network with arrows cannot be removed,
		// and arrowd keeps the network's links and rules when it stops.
		defer func() {
			ctx := context.WithoutCancel(ctx)
			_ = b.remove(ctx, "httpd") // gone already unless something failed
			if _, _, rerr := b.cli(ctx, "network", "rm", "benchnet"); rerr != nil {
				err = errors.Join(err, rerr)
			}
		}()
		if port, err = freeTCPPort(); err != nil {
			return err
		}
		if _, _, err := b.cli(ctx, "run", "-d", "--name", "httpd", "--network", "benchnet", "--accel", accel.Name,
			"--cpus", "1", "-m", "256M", "-p", fmt.Sprintf("127.0.0.1:%d:8000", port), httpd); err != nil {
			return err
		}
		if err := measure("arrow, bridge network (tap, nftables DNAT), -p", port); err != nil {
			return err
		}
		if err := b.remove(ctx, "httpd"); err != nil {
			return err
		}
	}

	fmt.Printf("HTTP through a published port on 127.0.0.1, wrk for %v per figure (accelerator: %s; %s)\n\n", duration, accel.Name, accel.Reason)
	if !bridge {
		fmt.Print("Not root: no bridge network (it needs arrowd as root).\n\n")
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 1, ' ', 0)
	fmt.Fprintln(tw, "| server\t| requests/s (1 KiB, 16 connections)\t| ÷ native\t| MiB/s (10 MiB responses, 2 connections)\t| ÷ native\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|")
	for _, r := range results {
		fmt.Fprintf(tw, "| %s\t| %.0f\t| %.3f×\t| %.1f\t| %.3f×\t|\n", r.name, r.rps, r.rps/results[0].rps, r.transfer, r.transfer/results[0].transfer)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Println("\nThe same static server binary each time; the arrows have one vCPU, the native server the whole host.")
	if accel.Name == vm.AccelTCG {
		fmt.Println("Under TCG the guest's kernel, TCP stack and server, and the virtio-net device, are emulated")
		fmt.Println("instruction by instruction: TCG dominates these figures, not the network path; with KVM")
		fmt.Println("the guest runs natively and the ratios would be far closer to 1.")
	}
	return nil
}

var (
	wrkRequests = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkTransfer = regexp.MustCompile(`Transfer/sec:\s+([0-9.]+)([KMG]?B)`)
)

// wrk loads url for d with conns connections and returns requests per
// second and MiB per second.
func wrk(ctx context.Context, url string, d time.Duration, conns int) (rps, mibs float64, err error) {
	threads := min(2, conns)
	secs := max(1, int(d.Seconds()))
	cmd := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conns), "-d", strconv.Itoa(secs)+"s", "--timeout", "10s", url)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("wrk %s: %w\n%s", url, err, out)
	}
	m := wrkRequests.FindSubmatch(out)
	t := wrkTransfer.FindSubmatch(out)
	if m == nil || t == nil {
		return 0, 0, fmt.Errorf("wrk %s: no figures in\n%s", url, out)
	}
	rps, _ = strconv.ParseFloat(string(m[1]), 64)
	mibs, _ = strconv.ParseFloat(string(t[1]), 64)
	switch string(t[2]) {
	case "B":
		mibs /= 1 << 20
	case "KB":
		mibs /= 1 << 10
	case "GB":
		mibs *= 1 << 10
	}
	return rps, mibs, nil
}

// awaitHTTP polls url until it answers 200, for up to a minute.
func awaitHTTP(ctx context.Context, url string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(time.Minute)
	for {
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", url, err)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// freeTCPPort returns a loopback port nothing listens on now.
func freeTCPPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
