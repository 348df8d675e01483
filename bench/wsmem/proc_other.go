//go:build !linux

package main

import "syscall"

// childAttr returns nil: Pdeathsig exists only on Linux.
func childAttr() *syscall.SysProcAttr { return nil }
