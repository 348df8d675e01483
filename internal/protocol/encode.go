package protocol

import (
	"strconv"

	"github.com/go-json-experiment/json/jsontext"
)

// AppendWelcome appends the welcome frame sent first on every connection:
//
//	{"welcome":{"client":"<client>","server":"<server>","session":"<session>","resumed":false}}
//
// with "acks":true after "resumed" when acks is set (the connection's
// directed messages are numbered; see [AppendNumbered]).
func AppendWelcome(dst []byte, client, server, session string, resumed, acks bool) []byte {
	dst = append(dst, `{"welcome":{"client":`...)
	dst = appendString(dst, client)
	dst = append(dst, `,"server":`...)
	dst = appendString(dst, server)
	dst = append(dst, `,"session":`...)
	dst = appendString(dst, session)
	if resumed {
		dst = append(dst, `,"resumed":true`...)
	} else {
		dst = append(dst, `,"resumed":false`...)
	}
	if acks {
		dst = append(dst, `,"acks":true`...)
	}
	return append(dst, `}}`...)
}

// AppendNumbered appends a directed message numbered seq for a client
// that acknowledges:
//
//	{"seq":<seq>,"message":<message>}
func AppendNumbered(dst []byte, seq uint64, message []byte) []byte {
	dst = append(dst, `{"seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"message":`...)
	dst = appendRaw(dst, message)
	return append(dst, '}')
}

// AppendResult appends the successful reply to a command that carried ref:
//
//	{"ref":<ref>,"action":"<action>","result":<result>}
//
// The "ref" member is left out when ref is empty.
func AppendResult(dst []byte, ref []byte, action string, result []byte) []byte {
	dst = appendRefAction(dst, ref, action)
	dst = append(dst, `,"result":`...)
	dst = appendRaw(dst, result)
	return append(dst, '}')
}

// AppendReplyError appends the failed reply to a command that carried ref:
//
//	{"ref":<ref>,"action":"<action>","error":{"code":"<code>","message":"<message>"}}
//
// The "ref" member is left out when ref is empty (use AppendActionError for
// commands without ref).
func AppendReplyError(dst []byte, ref []byte, action, code, message string) []byte {
	dst = appendRefAction(dst, ref, action)
	dst = append(dst, `,"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, "}}"...)
}

// AppendError appends a frame-level error, sent when no ref can carry it
// (bad JSON, frame too large, rate limit...):
//
//	{"error":{"code":"<code>","message":"<message>"}}
func AppendError(dst []byte, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	return append(dst, "}}"...)
}

// AppendActionError appends the error of a command whose object carried no
// ref:
//
//	{"error":{"code":"<code>","message":"<message>","action":"<action>"}}
func AppendActionError(dst []byte, action, code, message string) []byte {
	dst = append(dst, `{"error":{"code":`...)
	dst = appendString(dst, code)
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, message)
	dst = append(dst, `,"action":`...)
	dst = appendString(dst, action)
	return append(dst, "}}"...)
}

// AppendPush appends a message pushed by the application:
//
//	{"<name>":<value>}
func AppendPush(dst []byte, name string, value []byte) []byte {
	dst = append(dst, '{')
	dst = appendString(dst, name)
	dst = append(dst, ':')
	dst = appendRaw(dst, value)
	return append(dst, '}')
}

// appendRefAction appends `{"ref":<ref>,"action":"<action>"` (without the
// ref member when ref is empty).
func appendRefAction(dst, ref []byte, action string) []byte {
	if len(ref) > 0 {
		dst = append(dst, `{"ref":`...)
		dst = append(dst, ref...)
		dst = append(dst, `,"action":`...)
	} else {
		dst = append(dst, `{"action":`...)
	}
	return appendString(dst, action)
}

// appendRaw appends a raw JSON value, or null when it is empty.
func appendRaw(dst, v []byte) []byte {
	if len(v) == 0 {
		return append(dst, "null"...)
	}
	return append(dst, v...)
}

// safeASCII reports the bytes that appear unescaped in a JSON string.
var safeASCII = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendString appends s as a JSON string: directly when it is printable
// ASCII without quote or backslash (the common case: names, codes, ids),
// through jsontext.AppendQuote otherwise.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !safeASCII[s[i]] {
			// The error only reports invalid UTF-8, which AppendQuote has
			// replaced by U+FFFD: the output is valid JSON regardless.
			dst, _ = jsontext.AppendQuote(dst, s)
			return dst
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
