package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
)

// The frames the tool sends and reads (docs/protocol.md). Reading is done
// by prefix on the server's encoding rather than by a JSON decoder, so that
// the tool spends little CPU per message: the server runs on the same cores.

// frameKind tells a server frame's kind.
type frameKind int

const (
	kindOther   frameKind = iota // anything else: counted as unexpected
	kindWelcome                  // {"welcome":{...}}
	kindReply                    // {"ref":N,"action":"A","result":...} or "error":{...}
	kindError                    // {"error":{"code":"C",...}}
	kindPush                     // {"Chat.message":{...}} or {"Chat.whisper":{...}}
)

// frame is what the tool needs of a server frame.
type frame struct {
	kind   frameKind
	ref    int64  // reply: the numeric ref (-1 if not a number)
	code   string // reply or error: the error code, "" on success
	action string // reply: the action; error: the action named, if any
	name   string // push: the message name
	text   []byte // push: the "text" member, raw (the tool's texts need no escapes)
}

var (
	prefixRef     = []byte(`{"ref":`)
	prefixError   = []byte(`{"error":{"code":"`)
	prefixWelcome = []byte(`{"welcome":`)
	prefixMessage = []byte(`{"Chat.message":`)
	prefixWhisper = []byte(`{"Chat.whisper":`)
	memberAction  = []byte(`,"action":"`)
	memberError   = []byte(`,"error":{"code":"`)
	memberText    = []byte(`"text":"`)
)

// inspect classifies a server frame.
func inspect(msg []byte) frame {
	switch {
	case bytes.HasPrefix(msg, prefixRef):
		f := frame{kind: kindReply, ref: -1}
		rest := msg[len(prefixRef):]
		end := bytes.IndexByte(rest, ',')
		if end < 0 {
			return frame{}
		}
		if n, err := strconv.ParseInt(string(rest[:end]), 10, 64); err == nil {
			f.ref = n
		}
		rest = rest[end:]
		if !bytes.HasPrefix(rest, memberAction) {
			return frame{}
		}
		f.action, rest = upToQuote(rest[len(memberAction):])
		if bytes.HasPrefix(rest, memberError) {
			f.code, _ = upToQuote(rest[len(memberError):])
		}
		return f
	case bytes.HasPrefix(msg, prefixError):
		f := frame{kind: kindError}
		f.code, _ = upToQuote(msg[len(prefixError):])
		if i := bytes.LastIndex(msg, memberAction); i >= 0 && bytes.HasSuffix(msg, []byte(`"}}`)) {
			f.action, _ = upToQuote(msg[i+len(memberAction):])
		}
		return f
	case bytes.HasPrefix(msg, prefixMessage), bytes.HasPrefix(msg, prefixWhisper):
		f := frame{kind: kindPush, name: string(msg[2 : bytes.IndexByte(msg[2:], '"')+2])}
		if i := bytes.LastIndex(msg, memberText); i >= 0 {
			rest := msg[i+len(memberText):]
			if j := bytes.IndexByte(rest, '"'); j >= 0 {
				f.text = rest[:j]
			}
		}
		return f
	case bytes.HasPrefix(msg, prefixWelcome):
		return frame{kind: kindWelcome}
	}
	return frame{}
}

// upToQuote splits b at its first double quote.
func upToQuote(b []byte) (string, []byte) {
	i := bytes.IndexByte(b, '"')
	if i < 0 {
		return string(b), nil
	}
	return string(b[:i]), b[i+1:]
}

// welcome is the first frame of every connection.
type welcome struct {
	Client, Server, Session string
	Resumed                 bool
}

// parseWelcome reads a welcome frame; anything else is an error that tells
// what the server sent instead.
func parseWelcome(msg []byte) (welcome, error) {
	var w struct{ Welcome *welcome }
	if err := json.Unmarshal(msg, &w); err != nil || w.Welcome == nil || w.Welcome.Client == "" {
		return welcome{}, fmt.Errorf("expected a welcome frame, got %.200q", msg)
	}
	return *w.Welcome, nil
}

// appendStamp appends a message text carrying seq and the send time (ns on
// the tool's monotonic clock), padded with 'x' to size bytes:
// "<seq> <ns> xxxx...".
func appendStamp(dst []byte, seq, ns int64, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, ns, 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// parseStamp reads what appendStamp wrote.
func parseStamp(text []byte) (seq, ns int64, ok bool) {
	seq, text, ok = leadingInt(text)
	if !ok {
		return 0, 0, false
	}
	ns, _, ok = leadingInt(text)
	return seq, ns, ok
}

// leadingInt parses the digits before the first space of b.
func leadingInt(b []byte) (int64, []byte, bool) {
	i := bytes.IndexByte(b, ' ')
	if i <= 0 {
		return 0, nil, false
	}
	var n int64
	for _, c := range b[:i] {
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, b[i+1:], true
}

// appendJSONString appends s as a JSON string; the tool's own strings
// (names, room, client ids) need no escaping beyond what strconv does.
func appendJSONString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s)
	return append(dst, b...)
}
