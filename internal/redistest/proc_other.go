//go:build !linux

package redistest

import "os/exec"

// dieWithParent does nothing outside Linux: a test binary killed by a
// timeout may leave its redis-server behind.
func dieWithParent(*exec.Cmd) {}
