package redis

import (
	"strconv"
	"strings"
)

// An inbox entry is one element of a server's inbox list. It has three
// kinds, told apart by their shape (doc.go, "Inbox entries"; luaEntry in
// scripts.go writes and reads the same in Lua):
//
//	"<id> <data>"        a message for client id
//	"<id>#<seq> <data>"  a message numbered seq, for a client that acknowledges
//	" <id> <reason>"     a kick: the broker forgot client id (ForgetUser)
//
// Client ids hold neither spaces nor '#'.
type entryKind uint8

const (
	entryMessage entryKind = iota + 1
	entryNumbered
	entryKick
)

// entry is a decoded inbox entry; data is the reason of a kick.
type entry struct {
	kind entryKind
	id   string
	seq  uint64
	data string
}

// encode returns e as it is stored in an inbox.
func (e entry) encode() string {
	switch e.kind {
	case entryNumbered:
		return e.id + "#" + strconv.FormatUint(e.seq, 10) + " " + e.data
	case entryKick:
		return " " + e.id + " " + e.data
	default:
		return e.id + " " + e.data
	}
}

// decodeEntry parses an inbox entry; ok is false for a malformed one.
func decodeEntry(s string) (e entry, ok bool) {
	head, data, found := strings.Cut(s, " ")
	if !found {
		return entry{}, false
	}
	if head == "" {
		id, reason, found := strings.Cut(data, " ")
		if !found || id == "" {
			return entry{}, false
		}
		return entry{kind: entryKick, id: id, data: reason}, true
	}
	id, seq, numbered := strings.Cut(head, "#")
	if !numbered {
		return entry{kind: entryMessage, id: id, data: data}, true
	}
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || id == "" {
		return entry{}, false
	}
	return entry{kind: entryNumbered, id: id, seq: n, data: data}, true
}
