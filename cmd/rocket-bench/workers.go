package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Worker processes. A process may hold only so many open files (20,000
// here), so idle and connect above -per-process connections run the tool
// again as workers, each holding its share. The parent talks to each over
// its standard input and output, one line at a time:
//
//	worker: hello                       (started)
//	parent: go                          (open your connections now)
//	worker: progress N                  (N open so far; repeated)
//	worker: ready {partResult}          (all open or failed)
//	parent: close                       (close them; end of stdin means the same)
//	worker: closed {partErrors}         (closed; errors since ready included)
//
// The parent measures the opening time from "go" to the last "ready".

// workerEnv, set in a worker's environment, holds the index of its first
// connection (which picks its source addresses).
const workerEnv = "ROCKET_BENCH_WORKER"

// workerLifetime bounds a worker that is never told to close.
const workerLifetime = time.Hour

// partResult is what a worker reports once its connections are open.
type partResult struct {
	Opened  int64        `json:"opened"`
	Latency histSnapshot `json:"latency"`
	ToolRSS int64        `json:"tool_rss"`
}

// partErrors is a worker's error tally.
type partErrors struct {
	Kinds  map[string]int64  `json:"kinds,omitempty"`
	Firsts map[string]string `json:"firsts,omitempty"`
}

// workerMain runs a worker: the scenario's flags with -conns its share.
func workerMain(ctx context.Context, firstText string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rocket-bench worker:", err)
		return exitSetup
	}
	first, err := strconv.Atoi(firstText)
	if err != nil {
		return fail(fmt.Errorf("%s=%q: not a number", workerEnv, firstText))
	}
	o, err := parseArgs(args, stderr)
	if err != nil {
		return fail(err)
	}
	h := newLocalHolder(o, first, o.conns)

	var outMu sync.Mutex
	say := func(format string, a ...any) {
		outMu.Lock()
		defer outMu.Unlock()
		fmt.Fprintf(stdout, format+"\n", a...)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	ctx, cancel := context.WithTimeout(ctx, workerLifetime)
	defer cancel()

	say("hello")
	if l, ok := <-lines; !ok || l != "go" {
		return fail(errors.New("the parent process went away"))
	}
	openCtx := ctx
	if o.scenario == "connect" {
		var cancelOpen context.CancelFunc
		openCtx, cancelOpen = context.WithTimeout(ctx, o.duration)
		defer cancelOpen()
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				say("progress %d", h.opened())
			}
		}
	})
	_, _ = h.open(openCtx)
	close(done)
	wg.Wait()
	ready, _ := json.Marshal(partResult{Opened: h.opened(), Latency: h.latency.Snapshot(), ToolRSS: selfRSS()})
	say("ready %s", ready)

wait:
	for {
		select {
		case l, ok := <-lines:
			if !ok || l == "close" {
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	h.close()
	closed, _ := json.Marshal(partErrors{Kinds: h.errs.counts(), Firsts: h.errs.firsts()})
	say("closed %s", closed)
	return exitOK
}

// workerHolder holds the connections in worker processes.
type workerHolder struct {
	o       *options
	workers []*worker
	latency Histogram
	errs    tally
	toolRSS int64
}

// worker is one worker process.
type worker struct {
	first, n int
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	lines    chan string // lines from its stdout, progress excepted
	progress atomic.Int64
}

func newWorkerHolder(o *options) *workerHolder {
	h := &workerHolder{o: o}
	k := (o.conns + o.perProcess - 1) / o.perProcess
	first := 0
	for j := range k {
		n := o.conns / k
		if j < o.conns%k {
			n++
		}
		h.workers = append(h.workers, &worker{first: first, n: n})
		first += n
	}
	return h
}

// args returns a worker's command line: the parent's settings, with the
// worker's share of connections, rate and dials in flight.
func (h *workerHolder) args(w *worker) []string {
	o, k := h.o, len(h.workers)
	args := []string{o.scenario,
		"-conns", strconv.Itoa(w.n),
		"-per-process", strconv.Itoa(w.n),
		"-duration", o.duration.String(),
		"-rate", strconv.FormatFloat(o.rate/float64(k), 'f', -1, 64),
		"-concurrency", strconv.Itoa(max(1, o.concurrency/k)),
		"-sources", strconv.Itoa(o.sources),
		"-timeout", o.timeout.String(),
		"-quiet",
	}
	for _, u := range o.urls {
		args = append(args, "-url", u)
	}
	for _, u := range o.metrics {
		args = append(args, "-metrics", u)
	}
	return args
}

func (h *workerHolder) open(ctx context.Context) (time.Duration, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("workers: %w", err)
	}
	for _, w := range h.workers {
		if err := h.start(exe, w); err != nil {
			h.close()
			return 0, err
		}
	}
	for _, w := range h.workers {
		if _, err := w.expect(ctx, "hello", 30*time.Second); err != nil {
			h.close()
			return 0, err
		}
	}
	start := time.Now()
	for _, w := range h.workers {
		if _, err := io.WriteString(w.stdin, "go\n"); err != nil {
			h.close()
			return 0, fmt.Errorf("worker %d: %w", w.first, err)
		}
	}
	for _, w := range h.workers {
		rest, err := w.expect(ctx, "ready ", 0)
		if err != nil {
			h.close()
			return 0, err
		}
		var p partResult
		if err := json.Unmarshal([]byte(rest), &p); err != nil {
			h.close()
			return 0, fmt.Errorf("worker %d: bad ready line: %w", w.first, err)
		}
		w.progress.Store(p.Opened)
		h.latency.Merge(p.Latency)
		h.toolRSS += p.ToolRSS
	}
	return time.Since(start), nil
}

// start starts worker w.
func (h *workerHolder) start(exe string, w *worker) error {
	w.cmd = exec.Command(exe, h.args(w)...)
	w.cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", workerEnv, w.first))
	w.cmd.Stderr = h.o.stderr
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return err
	}
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := w.cmd.Start(); err != nil {
		return fmt.Errorf("start worker process: %w", err)
	}
	w.lines = make(chan string, 4)
	go func() {
		defer close(w.lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			l := sc.Text()
			if n, ok := strings.CutPrefix(l, "progress "); ok {
				v, _ := strconv.ParseInt(n, 10, 64)
				w.progress.Store(v)
				continue
			}
			w.lines <- l
		}
	}()
	return nil
}

// expect waits for a line starting with prefix and returns the rest; a
// timeout of 0 waits as long as ctx lives.
func (w *worker) expect(ctx context.Context, prefix string, timeout time.Duration) (string, error) {
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				return "", fmt.Errorf("worker %d exited before saying %q (see its messages above)", w.first, strings.TrimSpace(prefix))
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return rest, nil
			}
		case <-timer:
			return "", fmt.Errorf("worker %d: no %q within %v", w.first, strings.TrimSpace(prefix), timeout)
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

func (h *workerHolder) opened() int64 {
	var n int64
	for _, w := range h.workers {
		n += w.progress.Load()
	}
	return n
}

// close tells every worker to close its connections, collects their
// errors, and waits for them to exit (killing one that does not).
func (h *workerHolder) close() {
	for _, w := range h.workers {
		if w.stdin != nil {
			_, _ = io.WriteString(w.stdin, "close\n")
		}
	}
	for _, w := range h.workers {
		if w.cmd == nil || w.cmd.Process == nil {
			continue
		}
		if rest, err := w.expect(context.Background(), "closed ", 30*time.Second); err == nil {
			var p partErrors
			if json.Unmarshal([]byte(rest), &p) == nil {
				h.errs.merge(p.Kinds, p.Firsts)
			}
		} else {
			h.errs.add("worker", 1, err.Error())
		}
		w.stdin.Close()
		exited := make(chan struct{})
		go func() {
			for range w.lines { // drain, so that the process can exit
			}
			_ = w.cmd.Wait()
			close(exited)
		}()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = w.cmd.Process.Kill()
			<-exited
		}
	}
}

func (h *workerHolder) results() (*Histogram, *tally, int, int64) {
	return &h.latency, &h.errs, len(h.workers), h.toolRSS
}
