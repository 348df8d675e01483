//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The loopback scenario measures the machine, not Rocket: what moving small
// messages over loopback TCP costs here when nothing else is done with
// them. It gives the floor under the other scenarios' figures. This process
// accepts -conns connections from a peer process (the tool run again with
// loopbackPeerEnv set) and each side runs one event loop on one OS thread
// over raw non-blocking sockets and level-triggered epoll, with no
// WebSocket framing, no JSON and no Go netpoller.
//
//  1. ping-pong, for -duration after -warmup: one -size-byte message in
//     flight per connection, echoed by both sides. A hop is one write and
//     the read of it at the other end; the result is hops per second and
//     the CPU time of both processes per hop.
//  2. broadcast, loopbackRounds times: this process writes one message to
//     each connection (one writer thread per CPU, as Rocket's flushers) and
//     the peer tells, with one byte back, when it has read them all; the
//     result is the time of each round (fanout's "one message to every
//     member" with nothing but the system calls).
//
// The peer reads commands on its standard input, one a line, and answers
// each on its standard output: "sink" (stop echoing; count what arrives
// and send one byte back on the first connection whenever -conns messages
// have arrived) → "ok"; "cpu" → its CPU time so far in nanoseconds and the
// messages it has read.

// loopbackPeerEnv, set in the peer's environment, holds the address it
// connects to.
const loopbackPeerEnv = "ROCKET_BENCH_LOOPBACK_PEER"

// loopbackRounds is the number of broadcast rounds.
const loopbackRounds = 20

// loopbackMaxSize bounds -size: the event loop's read buffer. Much larger
// messages deadlock the ping-pong (each loop blocked writing its echo to a
// peer that no longer reads).
const loopbackMaxSize = 64 << 10

// runLoopback runs the loopback scenario.
func runLoopback(ctx context.Context, o *options) (*Result, error) {
	lfd, port, err := listenLoopback()
	if err != nil {
		return nil, err
	}
	defer syscall.Close(lfd)

	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to run the peer: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "loopback", "-conns", strconv.Itoa(o.conns), "-size", strconv.Itoa(o.size), "-sources", strconv.Itoa(o.sources))
	cmd.Env = append(os.Environ(), loopbackPeerEnv+"=127.0.0.1:"+strconv.Itoa(port))
	cmd.Stderr = o.stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the peer: %w", err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	peer := &loopbackPeer{w: stdin, r: bufio.NewReader(stdout)}

	fds, err := acceptN(lfd, o.conns, o.timeout)
	defer closeFDs(fds)
	if err != nil {
		return nil, err
	}
	if line, err := peer.r.ReadString('\n'); err != nil || line != "ready\n" {
		return nil, fmt.Errorf("peer did not get ready: %q %v", line, err)
	}

	lp, err := newEpollLoop(fds, o.size)
	if err != nil {
		return nil, err
	}
	defer lp.close()
	defer lp.start(fds[0])()

	// 1. Ping-pong.
	res := &Result{Size: o.size, Processes: 2}
	if err := lp.writeAll(fds, 1); err != nil {
		return nil, err
	}
	if !sleepFor(ctx, o.warmup) {
		return nil, ctx.Err()
	}
	peerCPU0, peerHops0, err := peer.cpu()
	if err != nil {
		return nil, err
	}
	self0, hops0, t0 := cpuTime(), lp.count.Load(), time.Now()
	if !sleepFor(ctx, o.duration) {
		return nil, ctx.Err()
	}
	self1, hops1, t1 := cpuTime(), lp.count.Load(), time.Now()
	peerCPU1, peerHops1, err := peer.cpu()
	if err != nil {
		return nil, err
	}
	hops := (hops1 - hops0) + (peerHops1 - peerHops0)
	cpu := (self1 - self0) + (peerCPU1 - peerCPU0)
	res.Ops, res.DurationS = hops, t1.Sub(t0).Seconds()
	if hops > 0 {
		res.HopCPUus = ptr(math.Round(float64(cpu)/float64(hops)) / 1e3)
		res.CPUCores = ptr(math.Round(float64(cpu)/float64(t1.Sub(t0))*100) / 100)
	}

	// 2. Broadcast: stop echoing, let the messages in flight land here,
	// then one message to every connection per round.
	lp.echo.Store(false)
	if !sleepFor(ctx, 300*time.Millisecond) {
		return nil, ctx.Err()
	}
	if err := peer.command("sink"); err != nil {
		return nil, err
	}
	gone := make(chan struct{}) // closed when the peer's output ends: it exited
	go func() {
		defer close(gone)
		io.Copy(io.Discard, peer.r)
	}()
	select {
	case <-lp.signal: // a ping-pong message that landed on the first connection
	default:
	}
	res.latency = &Histogram{}
	writers := runtime.GOMAXPROCS(0)
	for range loopbackRounds {
		start := time.Now()
		if err := writeSpread(fds, o.size, writers); err != nil {
			return nil, err
		}
		select {
		case <-lp.signal:
		case <-gone:
			return nil, errors.New("broadcast: the peer exited")
		case <-time.After(o.timeout):
			return nil, fmt.Errorf("broadcast: the peer did not read %d messages within %v", o.conns, o.timeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res.latency.Record(time.Since(start))
		if !sleepFor(ctx, 20*time.Millisecond) {
			return nil, ctx.Err()
		}
	}
	res.notes = append(res.notes,
		fmt.Sprintf("ping-pong: %.0f hops/s over %d connections, %.2f µs of CPU per hop (write + read, both processes), %.2f cores",
			float64(hops)/res.DurationS, o.conns, deref(res.HopCPUus), deref(res.CPUCores)),
		fmt.Sprintf("broadcast: one %d-byte message to each of %d connections (%d writer threads), %d rounds: the latency above is the time until the peer had them all",
			o.size, o.conns, writers, loopbackRounds))
	return res, nil
}

// deref returns *p, or 0.
func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// sleepFor sleeps for d, or until ctx ends; it reports whether ctx is
// still alive.
func sleepFor(ctx context.Context, d time.Duration) bool {
	return sleepUntil(ctx, now()+int64(d))
}

// loopbackPeer is the parent's handle on the peer process.
type loopbackPeer struct {
	w io.Writer
	r *bufio.Reader
}

// command sends one command and returns its answer.
func (p *loopbackPeer) command(c string) error {
	if _, err := io.WriteString(p.w, c+"\n"); err != nil {
		return fmt.Errorf("peer %s: %w", c, err)
	}
	line, err := p.r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("peer %s: %w", c, err)
	}
	if line != "ok\n" {
		return fmt.Errorf("peer %s: %q", c, line)
	}
	return nil
}

// cpu returns the peer's CPU time and the messages it has read.
func (p *loopbackPeer) cpu() (time.Duration, int64, error) {
	if _, err := io.WriteString(p.w, "cpu\n"); err != nil {
		return 0, 0, fmt.Errorf("peer cpu: %w", err)
	}
	line, err := p.r.ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("peer cpu: %w", err)
	}
	var ns, msgs int64
	if _, err := fmt.Sscan(line, &ns, &msgs); err != nil {
		return 0, 0, fmt.Errorf("peer cpu: %q: %w", line, err)
	}
	return time.Duration(ns), msgs, nil
}

// loopbackPeerMain runs the peer: connect -conns sockets to addr, then echo
// (or sink) what arrives until standard input ends.
func loopbackPeerMain(addr string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "rocket-bench loopback peer:", err)
		return exitSetup
	}
	if len(args) == 0 || args[0] != "loopback" {
		return fail(errors.New("want the loopback scenario"))
	}
	o, err := parseArgs(args, stderr)
	if err != nil {
		return fail(err)
	}
	port, err := strconv.Atoi(strings.TrimPrefix(addr, "127.0.0.1:"))
	if err != nil {
		return fail(fmt.Errorf("%s=%q: want 127.0.0.1:PORT", loopbackPeerEnv, addr))
	}
	fds := make([]int, 0, o.conns)
	defer func() { closeFDs(fds) }()
	for i := range o.conns {
		fd, err := dialLoopback(port, o.dialer(0).source(i))
		if err != nil {
			return fail(fmt.Errorf("connection %d: %w", i, err))
		}
		fds = append(fds, fd)
	}
	lp, err := newEpollLoop(fds, o.size)
	if err != nil {
		return fail(err)
	}
	defer lp.close()
	defer lp.start(-1)()
	fmt.Fprintln(stdout, "ready")
	sc := bufio.NewScanner(stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "sink":
			lp.sinkTo.Store(int64(fds[0]))
			lp.echo.Store(false)
			fmt.Fprintln(stdout, "ok")
		case "cpu":
			fmt.Fprintln(stdout, int64(cpuTime()), lp.count.Load())
		default:
			return fail(fmt.Errorf("unknown command %q", sc.Text()))
		}
	}
	return exitOK
}

// epollLoop reads its connections with level-triggered epoll on one OS
// thread: one read per ready connection, echoed back while echo is set.
type epollLoop struct {
	ep     int
	size   int
	echo   atomic.Bool
	stop   atomic.Bool
	count  atomic.Int64 // messages read
	sinkTo atomic.Int64 // the peer in sink mode: connection to signal on, 0 for none
	signal chan struct{}

	roundBytes int64 // a broadcast round: one message per connection

}

func newEpollLoop(fds []int, size int) (*epollLoop, error) {
	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	for _, fd := range fds {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			syscall.Close(ep)
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	lp := &epollLoop{ep: ep, size: max(size, 1), signal: make(chan struct{}, 1)}
	lp.roundBytes = int64(lp.size) * int64(len(fds))
	lp.echo.Store(true)
	return lp, nil
}

func (lp *epollLoop) close() { syscall.Close(lp.ep) }

// start runs the loop on a goroutine of its own (see run); the function
// returned stops it and waits for it.
func (lp *epollLoop) start(watch int) (stop func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		lp.run(watch)
	}()
	return func() {
		lp.stop.Store(true)
		<-done
	}
}

// run loops until stop is set. A byte arriving on watch (the parent's
// first connection) while not echoing is the peer's "all read" signal.
func (lp *epollLoop) run(watch int) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, loopbackMaxSize)
	var sunk int64
	var read int64 // bytes read: a read may hold part of a message
	for !lp.stop.Load() {
		n, err := syscall.EpollWait(lp.ep, events, 100)
		if err != nil {
			continue // EINTR: the Go runtime's signals
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			m, err := syscall.Read(fd, buf)
			if err != nil || m <= 0 {
				continue
			}
			if fd == watch && !lp.echo.Load() {
				select {
				case lp.signal <- struct{}{}:
				default:
				}
				continue
			}
			read += int64(m)
			lp.count.Store(read / int64(lp.size))
			if lp.echo.Load() {
				writeFull(fd, buf[:m])
				continue
			}
			if to := lp.sinkTo.Load(); to != 0 {
				// Whole rounds of one message per connection, each
				// signalled once.
				if sunk += int64(m); sunk >= lp.roundBytes {
					sunk -= lp.roundBytes
					writeFull(int(to), []byte{1})
				}
			}
		}
	}
}

// writeAll writes n messages to each connection, in one write each.
func (lp *epollLoop) writeAll(fds []int, n int) error {
	msg := make([]byte, lp.size*n)
	for _, fd := range fds {
		if err := writeFull(fd, msg); err != nil {
			return err
		}
	}
	return nil
}

// writeSpread writes one size-byte message to each connection from
// writers threads, each taking every writers-th connection.
func writeSpread(fds []int, size, writers int) error {
	msg := make([]byte, size)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			for i := w; i < len(fds); i += writers {
				if err := writeFull(fds[i], msg); err != nil {
					errs[w] = err
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeFull writes b to the non-blocking socket fd, waiting out EAGAIN.
func writeFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
			runtime.Gosched()
			continue
		case err != nil:
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	return nil
}

// listenLoopback opens a listening socket on 127.0.0.1 and an ephemeral
// port.
func listenLoopback() (fd, port int, err error) {
	fd, err = syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	if err = syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = syscall.Listen(fd, 4096)
	}
	var sa syscall.Sockaddr
	if err == nil {
		sa, err = syscall.Getsockname(fd)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, 0, fmt.Errorf("listening on 127.0.0.1: %w", err)
	}
	return fd, sa.(*syscall.SockaddrInet4).Port, nil
}

// acceptN accepts n connections on lfd within timeout, made non-blocking
// with TCP_NODELAY set (as Rocket's and the tool's sockets are).
func acceptN(lfd, n int, timeout time.Duration) ([]int, error) {
	tv := syscall.NsecToTimeval(int64(timeout))
	if err := syscall.SetsockoptTimeval(lfd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("accept timeout: %w", err)
	}
	fds := make([]int, 0, n)
	for len(fds) < n {
		fd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fds, fmt.Errorf("accepting connection %d of %d: %w", len(fds)+1, n, err)
		}
		fds = append(fds, fd)
		if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
			return fds, fmt.Errorf("TCP_NODELAY: %w", err)
		}
	}
	return fds, nil
}

// dialLoopback connects to 127.0.0.1:port from source (nil: the kernel
// chooses) and returns the socket, non-blocking, with TCP_NODELAY.
func dialLoopback(port int, source net.Addr) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if a, ok := source.(*net.TCPAddr); ok {
		var sa syscall.SockaddrInet4
		copy(sa.Addr[:], a.IP.To4())
		if err := syscall.Bind(fd, &sa); err != nil {
			syscall.Close(fd)
			return -1, fmt.Errorf("bind %v: %w", a.IP, err)
		}
	}
	for {
		err = syscall.Connect(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port})
		if err != syscall.EINTR {
			break
		}
	}
	if err == nil {
		err = syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
	}
	if err == nil {
		err = syscall.SetNonblock(fd, true)
	}
	if err != nil {
		syscall.Close(fd)
		return -1, fmt.Errorf("connect 127.0.0.1:%d: %w", port, err)
	}
	return fd, nil
}

// closeFDs closes the sockets.
func closeFDs(fds []int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// cpuTime returns the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
