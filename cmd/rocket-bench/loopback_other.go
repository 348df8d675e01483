//go:build !linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// loopbackPeerEnv, set in the peer's environment, holds the address it
// connects to.
const loopbackPeerEnv = "ROCKET_BENCH_LOOPBACK_PEER"

// loopbackMaxSize bounds -size.
const loopbackMaxSize = 64 << 10

var errLoopbackLinux = errors.New("the loopback scenario uses epoll: it runs on Linux only")

// runLoopback needs Linux.
func runLoopback(ctx context.Context, o *options) (*Result, error) {
	return nil, errLoopbackLinux
}

// loopbackPeerMain needs Linux.
func loopbackPeerMain(addr string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "rocket-bench loopback peer:", errLoopbackLinux)
	return exitSetup
}
