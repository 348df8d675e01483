package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Stats is the server's answer to GET /stats.
type Stats struct {
	Lib        string `json:"lib"`
	Conns      int64  `json:"conns"`      // open WebSocket connections
	Goroutines int    `json:"goroutines"` // runtime.NumGoroutine
	HeapInuse  uint64 `json:"heap_inuse"` // MemStats after runtime.GC
	StackInuse uint64 `json:"stack_inuse"`
	Sys        uint64 `json:"sys"`
	RSS        uint64 `json:"rss"`       // VmRSS after runtime.GC, bytes
	RSSFreed   uint64 `json:"rss_freed"` // VmRSS after debug.FreeOSMemory, bytes
}

// serveFunc installs the library's /ws handler on mux and serves mux on ln
// until the process exits. conns counts open WebSocket connections.
type serveFunc func(ln net.Listener, mux *http.ServeMux, conns *atomic.Int64) error

// serverMain runs the server role: it listens, prints "port N" on stdout and
// serves /ws with the chosen library and /stats.
func serverMain(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	lib := fs.String("lib", "gobwas", "library: "+strings.Join(libNames(), ", "))
	addr := fs.String("addr", "127.0.0.1:0", "loopback listen address")
	life := fs.Duration("timeout", 5*time.Minute, "exit after this long")
	_ = fs.Parse(args)

	serve, ok := libs[*lib]
	if !ok {
		return fmt.Errorf("unknown -lib %q", *lib)
	}
	if err := checkLoopback(*addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	time.AfterFunc(*life, func() {
		fmt.Fprintln(os.Stderr, "server: timeout, exiting")
		os.Exit(3)
	})

	var conns atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(readStats(*lib, &conns))
	})
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	return serve(ln, mux, &conns)
}

// readStats collects memory figures after a full GC.
func readStats(lib string, conns *atomic.Int64) Stats {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := Stats{
		Lib:        lib,
		Conns:      conns.Load(),
		Goroutines: runtime.NumGoroutine(),
		HeapInuse:  ms.HeapInuse,
		StackInuse: ms.StackInuse,
		Sys:        ms.Sys,
		RSS:        vmRSS(),
	}
	debug.FreeOSMemory()
	s.RSSFreed = vmRSS()
	return s
}

// vmRSS returns VmRSS from /proc/self/status in bytes, or 0.
func vmRSS() uint64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// checkLoopback rejects any host that is not in 127.0.0.0/8.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	ip := net.ParseIP(host)
	if ip == nil || ip.To4() == nil || ip.To4()[0] != 127 {
		return fmt.Errorf("%s is not a 127.0.0.0/8 address", hostport)
	}
	return nil
}

// stdServe serves mux on ln with a standard net/http server.
func stdServe(ln net.Listener, mux *http.ServeMux) error {
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(ln)
}
