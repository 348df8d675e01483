package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// result is one measurement of one library.
type result struct {
	lib        string
	run        int
	conns      int
	base, idle Stats
	echo       error
}

// runMain runs the driver role: for each run and library it starts a fresh
// server and client process, measures, and prints a Markdown table.
func runMain(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	n := fs.Int("conns", 10000, "idle connections per measurement")
	runs := fs.Int("runs", 3, "measurements per library")
	only := fs.String("libs", strings.Join(libOrder, ","), "comma-separated libraries")
	settle := fs.Duration("settle", 2*time.Second, "idle time before the measurement")
	total := fs.Duration("timeout", 8*time.Minute, "bound for the whole run")
	_ = fs.Parse(args)

	exe, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *total)
	defer cancel2()

	var results []result
	for run := 1; run <= *runs; run++ {
		for _, lib := range strings.Split(*only, ",") {
			if _, ok := libs[lib]; !ok {
				return fmt.Errorf("unknown library %q", lib)
			}
			r, err := measure(ctx, exe, lib, *n, *settle)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", lib, run, err)
			}
			r.run = run
			fmt.Fprintf(os.Stderr, "%s run %d: %.2f KiB/conn heap+stack\n", lib, run, perConnKiB(r.heapStack(), r.conns))
			results = append(results, r)
		}
	}
	printReport(os.Stdout, results, *runs)
	return nil
}

// measure starts a server and a client for lib, opens n idle connections
// and returns the server's stats before and after, plus an echo check.
func measure(parent context.Context, exe, lib string, n int, settle time.Duration) (result, error) {
	r := result{lib: lib, conns: n}
	ctx, cancel := context.WithTimeout(parent, 2*time.Minute)
	defer cancel()

	srv := exec.CommandContext(ctx, exe, "server", "-lib", lib, "-addr", "127.0.0.1:0", "-timeout", "3m")
	srv.SysProcAttr = childAttr()
	srv.Stderr = os.Stderr
	srvOut, err := srv.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := srv.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}()
	line, err := firstLine(srvOut, "port ")
	if err != nil {
		return r, fmt.Errorf("server: %w", err)
	}
	port := strings.TrimPrefix(line, "port ")
	base := "http://127.0.0.1:" + port
	wsURL := "ws://127.0.0.1:" + port + "/ws"

	if r.base, err = getStats(ctx, base); err != nil {
		return r, err
	}

	cli := exec.CommandContext(ctx, exe, "client", "-url", wsURL, "-conns", strconv.Itoa(n), "-timeout", "3m")
	cli.SysProcAttr = childAttr()
	cli.Stderr = os.Stderr
	cliIn, err := cli.StdinPipe()
	if err != nil {
		return r, err
	}
	cliOut, err := cli.StdoutPipe()
	if err != nil {
		return r, err
	}
	if err := cli.Start(); err != nil {
		return r, err
	}
	defer func() {
		_ = cliIn.Close() // tells the client to close its connections and exit
		_ = cli.Wait()
	}()
	if _, err := firstLine(cliOut, "ready "); err != nil {
		return r, fmt.Errorf("client: %w", err)
	}

	// Wait until the server counts every connection, then let it idle.
	for {
		s, err := getStats(ctx, base)
		if err != nil {
			return r, err
		}
		if s.Conns >= int64(n) {
			break
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("server saw %d of %d connections: %w", s.Conns, n, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	select {
	case <-ctx.Done():
		return r, ctx.Err()
	case <-time.After(settle):
	}
	if r.idle, err = getStats(ctx, base); err != nil {
		return r, err
	}
	r.echo = echoCheck(ctx, wsURL)
	return r, nil
}

// firstLine reads lines from rd until one starts with prefix.
func firstLine(rd io.Reader, prefix string) (string, error) {
	sc := bufio.NewScanner(rd)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text(), nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", errors.New("exited before printing " + strings.TrimSpace(prefix))
}

// getStats fetches GET /stats from the server.
func getStats(ctx context.Context, base string) (Stats, error) {
	var s Stats
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/stats", nil)
	if err != nil {
		return s, err
	}
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// heapStack is the growth of HeapInuse+StackInuse in bytes.
func (r result) heapStack() int64 {
	return int64(r.idle.HeapInuse+r.idle.StackInuse) - int64(r.base.HeapInuse+r.base.StackInuse)
}

func perConnKiB(delta int64, n int) float64 { return float64(delta) / float64(n) / 1024 }

// printReport writes the machine, one row per measurement, and the median
// per library when there are three or more runs.
func printReport(w io.Writer, rs []result, runs int) {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(w, "nproc %d, %s, kernel %s\n\n", runtime.NumCPU(), runtime.Version(), strings.TrimSpace(string(kernel)))
	fmt.Fprintln(w, "| library | run | conns | goroutines Δ | heap+stack Δ/conn | of which stack | RSS Δ/conn | RSS Δ/conn after FreeOSMemory | RSS total | echo |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rs {
		echo := "ok"
		if r.echo != nil {
			echo = "FAIL: " + r.echo.Error()
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d | %.2f KiB | %.2f KiB | %.2f KiB | %.2f KiB | %.1f MiB | %s |\n",
			r.lib, r.run, r.idle.Conns, r.idle.Goroutines-r.base.Goroutines,
			perConnKiB(r.heapStack(), r.conns),
			perConnKiB(int64(r.idle.StackInuse)-int64(r.base.StackInuse), r.conns),
			perConnKiB(int64(r.idle.RSS)-int64(r.base.RSS), r.conns),
			perConnKiB(int64(r.idle.RSSFreed)-int64(r.base.RSSFreed), r.conns),
			float64(r.idle.RSS)/(1<<20), echo)
	}
	if runs < 3 {
		return
	}
	fmt.Fprintf(w, "\nMedian of %d runs:\n\n", runs)
	fmt.Fprintln(w, "| library | heap+stack Δ/conn | RSS Δ/conn | RSS Δ/conn after FreeOSMemory | RSS total |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	byLib := map[string][]result{}
	var order []string
	for _, r := range rs {
		if byLib[r.lib] == nil {
			order = append(order, r.lib)
		}
		byLib[r.lib] = append(byLib[r.lib], r)
	}
	for _, lib := range order {
		g := byLib[lib]
		n := g[0].conns
		fmt.Fprintf(w, "| %s | %.2f KiB | %.2f KiB | %.2f KiB | %.1f MiB |\n", lib,
			perConnKiB(median(g, func(r result) int64 { return r.heapStack() }), n),
			perConnKiB(median(g, func(r result) int64 { return int64(r.idle.RSS) - int64(r.base.RSS) }), n),
			perConnKiB(median(g, func(r result) int64 { return int64(r.idle.RSSFreed) - int64(r.base.RSSFreed) }), n),
			float64(median(g, func(r result) int64 { return int64(r.idle.RSS) }))/(1<<20))
	}
}

// median returns the median of f over rs (the lower middle for even counts).
func median(rs []result, f func(result) int64) int64 {
	v := make([]int64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Slice(v, func(i, j int) bool { return v[i] < v[j] })
	return v[(len(v)-1)/2]
}
