// Rocket's addition to its copy of nbio, under the same MIT license
// (LICENSE): the input accounting of input.go, which the standard-library
// engine (Windows) does not bound.

//go:build windows

package nbio

import "time"

// InputJobOverhead: see input.go.
const InputJobOverhead = 64

// AddInput does nothing on this platform.
func (c *Conn) AddInput(n int) {}

// DoneInput does nothing on this platform.
func (c *Conn) DoneInput(n int) {}

// InputBytes returns 0 on this platform.
func (c *Conn) InputBytes() int { return 0 }

// ReadPaused returns false on this platform.
func (c *Conn) ReadPaused() bool { return false }

// OnInputResumed is never called on this platform.
func (g *Engine) OnInputResumed(h func(c *Conn, paused time.Duration)) {}
