package protocol

import (
	"hash/maphash"
	"sync/atomic"
)

// nameChar reports the bytes allowed in either part of a command name:
// ASCII letters, digits and '_'.
var nameChar = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	t['_'] = true
	return t
}()

// SplitName splits a command name "Controller.action" at its dot. ok is
// false unless name holds exactly one dot and both parts are non-empty and
// made only of ASCII letters, digits and '_'.
func SplitName(name string) (controller, action string, ok bool) {
	dot := nameDot(name)
	if dot < 0 {
		return "", "", false
	}
	return name[:dot], name[dot+1:], true
}

// nameDot returns the index of the dot of a valid command name, or -1 if
// the name is invalid (see SplitName).
func nameDot[T ~string | ~[]byte](name T) int {
	dot := -1
	for i := 0; i < len(name); i++ {
		c := name[i]
		if nameChar[c] {
			continue
		}
		if c != '.' || dot >= 0 {
			return -1
		}
		dot = i
	}
	if dot <= 0 || dot == len(name)-1 {
		return -1
	}
	return dot
}

// The intern table turns the bytes of a command name into a string without
// allocating when the same name was seen recently. It is a fixed-size,
// lossy, lock-free cache: a slot holds the last name hashed to it, so a
// client sending many distinct names only costs allocations, never memory.
const (
	internSlots  = 1024 // power of two
	internMaxLen = 64
)

var (
	internSeed  = maphash.MakeSeed()
	internTable [internSlots]atomic.Pointer[string]
)

// intern returns string(b), shared with earlier calls for the same bytes
// when the cache still holds them.
func intern(b []byte) string {
	if len(b) > internMaxLen {
		return string(b)
	}
	slot := &internTable[maphash.Bytes(internSeed, b)&(internSlots-1)]
	if p := slot.Load(); p != nil && *p == string(b) {
		return *p
	}
	s := string(b)
	slot.Store(&s)
	return s
}
