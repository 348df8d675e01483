package redis

import (
	"strconv"
	"strings"
)

// An inbox entry is one element of a server's inbox list: a message for
// one of the server's clients, or a word to the server about one of them.
// It is encoded here in Go and in luaEntry (scripts.go) in Lua, and
// nowhere else; doc.go documents it for operators.
//
// Entries of version 1 start with '#', the version and a letter that
// tells their kind, then a space and fields separated by single spaces
// (the data, last, is the rest of the entry and may hold anything):
//
//	kind      layout                     what
//	message   "#1m <id> <data>"          a message for client id
//	numbered  "#1n <id> <seq> <data>"    a message numbered seq, for a client that acknowledges
//	kick      "#1k <id> <reason>"        the broker forgot client id (ForgetUser)
//	replaced  "#1r <id>"                 client id resumed on another server (Resume)
//	returned  "#1e <id>"                 the server client id was taken from handed back its unsent messages (DisconnectWith)
//
// Version 0 is the forms of the releases before version 1, told apart by
// their shape, with no replaced or returned entry:
//
//	message   "<id> <data>"
//	numbered  "<id>#<seq> <data>"
//	kick      " <id> <reason>"
//
// Client ids hold neither spaces nor '#', so no version 0 entry starts
// with '#'. decodeEntry (and Lua's parse_entry) read both versions; the
// version 0 forms can go in the release after the first one that writes
// version 1 (see docs/deployment.md, "Rolling restart").
//
// Which version a server reads is told by its id: the servers of nodes
// that read version 1 have ids ending in serverMark ("17v1"), those of
// older nodes plain decimal ids ("17"). Every script that writes into an
// inbox writes the version its server reads, so a node of a release
// before never finds an entry it cannot parse in its own inbox, and
// gets no replaced entry.
type entryKind uint8

const (
	entryMessage entryKind = iota + 1
	entryNumbered
	entryKick
	entryReplaced
	entryReturned
)

// entryKinds holds the kind letters of version 1 entries.
var entryKinds = [...]byte{entryMessage: 'm', entryNumbered: 'n', entryKick: 'k', entryReplaced: 'r', entryReturned: 'e'}

// serverMark ends the ids of the servers that read version 1 entries.
const serverMark = "v1"

// entry is a decoded inbox entry; data is the reason of a kick.
type entry struct {
	kind entryKind
	id   string
	seq  uint64
	data string
}

// encode returns e as it is stored in the inbox of a server that reads
// version (0 or 1). Replaced and returned entries have no version 0 form:
// encode returns "" for them.
func (e entry) encode(version int) string {
	if version == 0 {
		switch e.kind {
		case entryNumbered:
			return e.id + "#" + strconv.FormatUint(e.seq, 10) + " " + e.data
		case entryKick:
			return " " + e.id + " " + e.data
		case entryReplaced, entryReturned:
			return ""
		default:
			return e.id + " " + e.data
		}
	}
	head := "#1" + string(entryKinds[e.kind]) + " " + e.id
	switch e.kind {
	case entryNumbered:
		return head + " " + strconv.FormatUint(e.seq, 10) + " " + e.data
	case entryReplaced, entryReturned:
		return head
	default:
		return head + " " + e.data
	}
}

// decodeEntry parses an inbox entry of either version; ok is false for a
// malformed one.
func decodeEntry(s string) (e entry, ok bool) {
	if strings.HasPrefix(s, "#") {
		return decodeEntry1(s)
	}
	return decodeEntry0(s)
}

// decodeEntry1 parses a version 1 entry.
func decodeEntry1(s string) (e entry, ok bool) {
	if len(s) < 5 || s[1] != '1' || s[3] != ' ' {
		return entry{}, false
	}
	rest := s[4:]
	switch s[2] {
	case 'r', 'e':
		if strings.IndexByte(rest, ' ') >= 0 {
			return entry{}, false
		}
		if s[2] == 'e' {
			return entry{kind: entryReturned, id: rest}, true
		}
		return entry{kind: entryReplaced, id: rest}, true
	case 'm':
		e.kind = entryMessage
	case 'k':
		e.kind = entryKick
	case 'n':
		e.kind = entryNumbered
	default:
		return entry{}, false
	}
	id, data, found := strings.Cut(rest, " ")
	if !found || id == "" {
		return entry{}, false
	}
	e.id, e.data = id, data
	if e.kind == entryNumbered {
		seq, data, found := strings.Cut(data, " ")
		n, err := strconv.ParseUint(seq, 10, 64)
		if !found || err != nil {
			return entry{}, false
		}
		e.seq, e.data = n, data
	}
	return e, true
}

// decodeEntry0 parses a version 0 entry (read for one release more: see
// entryKind).
func decodeEntry0(s string) (e entry, ok bool) {
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

// serverNumber returns the number of server id sid ("17" for "17v1" and
// for "17"), which the server_ids counter issued; ok is false for an id
// that does not start with one.
func serverNumber(sid string) (n uint64, ok bool) {
	n, err := strconv.ParseUint(strings.TrimSuffix(sid, serverMark), 10, 64)
	return n, err == nil
}
