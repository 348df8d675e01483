package main

import (
	"strings"
	"testing"
)

// TestLoopback measures the machine's floor with its peer process (this
// test binary, run again).
func TestLoopback(t *testing.T) {
	res := benchOK(t, "loopback", 50, short...)
	if v, ok := res["hop_cpu_us"].(float64); !ok || v <= 0 {
		t.Errorf("hop_cpu_us = %v, want > 0", res["hop_cpu_us"])
	}
	if v, ok := res["cpu_cores"].(float64); !ok || v <= 0 {
		t.Errorf("cpu_cores = %v, want > 0", res["cpu_cores"])
	}
	if res["processes"] != float64(2) || res["nodes"] != float64(0) {
		t.Errorf("processes %v, nodes %v: want 2 and 0", res["processes"], res["nodes"])
	}
}

// TestLoopbackSize refuses messages of no bytes.
func TestLoopbackSize(t *testing.T) {
	code, res, stderr := bench(t, "loopback", "-size", "0")
	if code != exitSetup || res != nil {
		t.Fatalf("exit %d, result %v; want %d and none\n%s", code, res, exitSetup, stderr)
	}
	if !strings.Contains(stderr, "-size must be at least 1") {
		t.Errorf("stderr does not say what is wrong:\n%s", stderr)
	}
}
