//go:build linux || darwin || netbsd || freebsd || openbsd || dragonfly

// Rocket's addition to its copy of nbio, under the same MIT license
// (LICENSE): back-pressure on input.

package nbio

import "time"

// InputJobOverhead is what one queued job is counted for in a connection's
// input, besides the bytes it carries: a message without payload (a ping,
// an empty frame) still costs a closure and a slot in the job list.
const InputJobOverhead = 64

// AddInput counts n more bytes read from c and not yet handled (a message
// queued on c's job list). Once c's input reaches the engine's
// MaxConnInputBytes, the poller stops reading c until DoneInput brings it
// back to half of it, so that TCP flow control slows the peer down.
//
//go:norace
func (c *Conn) AddInput(n int) { c.inputBytes.Add(int64(n)) }

// DoneInput counts n bytes of c's input as handled, and lets the poller
// read c again if it had stopped and the input is down to half the bound.
//
//go:norace
func (c *Conn) DoneInput(n int) {
	left := c.inputBytes.Add(-int64(n))
	// Paired with pauseRead: the flag is set before the input is checked
	// there, and read after the input is lowered here, so one of the two
	// sees the other's change.
	if !c.readPausedHint.Load() || left > c.inputResumeAt() {
		return
	}
	c.mux.Lock()
	if c.readPaused && !c.closed && c.inputBytes.Load() <= c.inputResumeAt() {
		c.readPaused = false
		c.readPausedHint.Store(false)
		paused := time.Since(c.pausedAt)
		if c.p != nil {
			_ = c.p.setInterest(c)
		}
		c.mux.Unlock()
		if h := c.p.g.onInputResumed; h != nil {
			h(c, paused)
		}
		return
	}
	c.mux.Unlock()
}

// InputBytes returns the bytes read from c and not yet handled.
//
//go:norace
func (c *Conn) InputBytes() int { return int(c.inputBytes.Load()) }

// ReadPaused reports whether the poller has stopped reading c because its
// input is over the bound.
//
//go:norace
func (c *Conn) ReadPaused() bool { return c.readPausedHint.Load() }

//go:norace
func (c *Conn) inputResumeAt() int64 {
	return int64(c.p.g.MaxConnInputBytes / 2)
}

// inputOver reports whether the poller must stop reading c.
//
//go:norace
func (c *Conn) inputOver() bool {
	max := c.p.g.MaxConnInputBytes
	return max > 0 && c.inputBytes.Load() >= int64(max)
}

// pauseRead stops the poller reading c (called by the poller, after a read
// that took c's input over the bound).
//
//go:norace
func (c *Conn) pauseRead() {
	c.mux.Lock()
	defer c.mux.Unlock()
	if c.closed || c.readPaused {
		return
	}
	c.readPausedHint.Store(true)
	if !c.inputOver() {
		// Handled meanwhile.
		c.readPausedHint.Store(false)
		return
	}
	c.readPaused = true
	c.pausedAt = time.Now()
	_ = c.p.setInterest(c)
}

// OnInputResumed sets a handler called when the poller reads a connection
// again after its input was over MaxConnInputBytes, with how long it was
// not read.
//
//go:norace
func (g *Engine) OnInputResumed(h func(c *Conn, paused time.Duration)) {
	g.onInputResumed = h
}
