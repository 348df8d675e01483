package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// numSourceIPs is how many source addresses (127.0.0.2 upwards) the client
// spreads its connections over; one source IP gives only ~28,000 ports.
const numSourceIPs = 8

// dialWS opens one client WebSocket connection to u from source address
// 127.0.0.(2 + i%numSourceIPs).
func dialWS(ctx context.Context, u string, i int) (net.Conn, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%numSourceIPs))}
	d := ws.Dialer{
		Timeout: 10 * time.Second,
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nd := net.Dialer{LocalAddr: src}
			return nd.DialContext(ctx, network, addr)
		},
	}
	conn, br, _, err := d.Dial(ctx, u)
	if br != nil {
		ws.PutReader(br)
	}
	return conn, err
}

// checkURL rejects URLs whose host is not in 127.0.0.0/8.
func checkURL(u string) error {
	p, err := url.Parse(u)
	if err != nil {
		return err
	}
	return checkLoopback(p.Host)
}

// echoCheck sends one text frame on a fresh connection and expects it back.
func echoCheck(ctx context.Context, u string) error {
	conn, err := dialWS(ctx, u, 0)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	// Plain servers echo the frame as it is; Rocket first sends its
	// welcome, then the reply to the Echo.echo command.
	want := []byte(`{"ref":1,"Echo.echo":"hello rocket"}`)
	if err := wsutil.WriteClientText(conn, want); err != nil {
		return err
	}
	for {
		got, op, err := wsutil.ReadServerData(conn)
		if err != nil {
			return err
		}
		if op == ws.OpText && bytes.HasPrefix(got, []byte(`{"welcome":`)) {
			continue
		}
		if op != ws.OpText || !(bytes.Equal(got, want) || bytes.Contains(got, []byte(`"result":"hello rocket"`))) {
			return fmt.Errorf("echo mismatch: op %v payload %q", op, got)
		}
		return nil
	}
}

// clientMain runs the client role: it opens -conns connections, prints
// "ready N", and holds them until stdin closes, a signal arrives or -timeout.
func clientMain(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	u := fs.String("url", "ws://127.0.0.1:8080/ws", "server URL (loopback only)")
	n := fs.Int("conns", 1000, "connections to open")
	workers := fs.Int("workers", 32, "concurrent dials")
	echo := fs.Bool("echo", false, "run an echo check first")
	life := fs.Duration("timeout", 5*time.Minute, "exit after this long")
	_ = fs.Parse(args)
	if err := checkURL(*u); err != nil {
		return err
	}

	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *life)
	defer cancel2()

	if *echo {
		if err := echoCheck(ctx, *u); err != nil {
			return fmt.Errorf("echo: %w", err)
		}
		fmt.Println("echo ok")
	}

	conns := make([]net.Conn, *n)
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= *n || ctx.Err() != nil {
					return
				}
				c, err := dialWS(ctx, *u, i)
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("conn %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	if firstErr != nil {
		return firstErr
	}
	fmt.Printf("ready %d %.1fs\n", *n, time.Since(start).Seconds())

	// Hold until told: stdin closes, a signal, or the lifetime ends.
	stdinClosed := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(stdinClosed)
	}()
	select {
	case <-stdinClosed:
	case <-ctx.Done():
	}
	return nil
}
