package protocol

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// decodeOptions lets an object repeat a name (a command may be sent twice in
// one object); Decode itself rejects a repeated "ref". UTF-8 is validated.
var decodeOptions = jsontext.AllowDuplicateNames(true)

// decoder is a reusable jsontext.Decoder reading straight from a frame:
// given a *bytes.Buffer, jsontext parses in place, so values it returns are
// sub-slices of the frame and the frame is never copied nor written.
type decoder struct {
	buf bytes.Buffer
	dec jsontext.Decoder
	lim Limits
	// syntax is set when the error being returned is a JSON syntax error
	// (nothing more can be read from dec).
	syntax bool
}

var decoderPool = sync.Pool{New: func() any { return new(decoder) }}

// Decode appends the commands of frame to dst and returns the extended
// slice. Limits with zero fields use the defaults.
//
// On failure it returns an *Error and dst unchanged (no command at all: a
// frame runs whole or not at all). The codes are:
//   - CodeTooLarge when arrays and objects nest deeper than lim.MaxDepth
//     (checked by a cheap scan before parsing) or the frame carries more
//     than d.lim.MaxCommands commands;
//   - CodeUnknownAction when a key with a dot is not a valid name per
//     SplitName;
//   - CodeBadFrame for anything else: empty frame, invalid JSON or UTF-8,
//     trailing data, a frame that is not an object or a non-empty array of
//     objects, an object without commands, a ref that is not a string or
//     number or that is repeated, an unknown reserved key.
//
// A frame that is not valid JSON is always reported as CodeBadFrame (unless
// it is too deep), whatever else is wrong with it.
//
// The returned commands alias frame, which must not be modified while they
// are in use. Decode is safe for concurrent use.
func Decode(frame []byte, lim Limits, dst []Command) ([]Command, error) {
	lim = lim.normalize()
	if tooDeep(frame, lim.MaxDepth) {
		return dst, &Error{Code: CodeTooLarge, Message: "JSON nested deeper than " + strconv.Itoa(lim.MaxDepth) + " levels"}
	}
	d := decoderPool.Get().(*decoder)
	d.buf = *bytes.NewBuffer(frame)
	d.dec.Reset(&d.buf, decodeOptions)
	d.lim = lim
	d.syntax = false

	start := len(dst)
	out, err := d.decodeFrame(frame, dst)

	// Drop every reference to the frame before pooling the decoder.
	d.buf = bytes.Buffer{}
	d.dec.Reset(&d.buf)
	decoderPool.Put(d)

	if err != nil {
		clear(out[start:]) // do not keep the frame alive through dst
		return out[:start], err
	}
	return out, nil
}

// decodeFrame decodes the whole frame. On a semantic error (one that is not
// a JSON syntax error) it still reads the rest of the frame, so that a frame
// that is not valid JSON is always reported as such.
func (d *decoder) decodeFrame(frame []byte, dst []Command) ([]Command, error) {
	dec := &d.dec
	var err *Error
	switch dec.PeekKind() {
	case '{':
		dst, err = d.decodeObject(dst, len(dst))
	case '[':
		dst, err = d.decodeArray(dst)
	case jsontext.KindInvalid:
		_, rerr := dec.ReadToken()
		if rerr == io.EOF {
			return dst, badFrame("empty frame")
		}
		return dst, d.syntaxError(rerr)
	default:
		err = badFrame("frame must be a JSON object or array, not " + kindName(dec.PeekKind()))
		if serr := dec.SkipValue(); serr != nil {
			return dst, d.syntaxError(serr)
		}
	}
	if err != nil && d.syntax {
		return dst, err // nothing more can be read
	}
	if err != nil {
		// Semantic error: finish reading the frame so that a syntax error
		// later in it takes precedence.
		for dec.StackDepth() > 0 {
			if _, rerr := dec.ReadToken(); rerr != nil {
				return dst, d.syntaxError(rerr)
			}
		}
	}
	end := int(dec.InputOffset())
	switch _, rerr := dec.ReadToken(); {
	case rerr == io.EOF:
	case rerr != nil:
		return dst, d.syntaxError(rerr)
	default:
		if err == nil {
			for end < len(frame) && isSpace(frame[end]) {
				end++
			}
			err = badFrame("trailing data after the top-level value at byte " + strconv.Itoa(end))
		}
	}
	if err != nil {
		return dst, err
	}
	return dst, nil
}

// ParseSeq parses a message number as an "ack" carries it: a JSON integer
// from 0 to the largest uint64, without sign, fraction or exponent.
func ParseSeq(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 20 || len(v) > 1 && v[0] == '0' {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	return n, err == nil
}

// shortValue returns the start of a JSON value for an error message.
func shortValue(v []byte) string {
	s, cut := head(v, 24)
	if cut {
		return s + "..."
	}
	return s
}

// head returns b, or its first bytes up to max cut on a rune boundary,
// and whether it cut.
func head(b []byte, max int) (string, bool) {
	if len(b) <= max {
		return string(b), false
	}
	n := max
	for n > 0 && !utf8.RuneStart(b[n]) {
		n--
	}
	return string(b[:n]), true
}

// isSpace reports whether c is JSON whitespace.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// decodeArray decodes a non-empty array of objects; the decoder is at '['.
func (d *decoder) decodeArray(dst []Command) ([]Command, *Error) {
	dec := &d.dec
	first := len(dst)
	if _, err := dec.ReadToken(); err != nil {
		return dst, d.syntaxError(err)
	}
	for i := 0; ; i++ {
		var err *Error
		switch k := dec.PeekKind(); k {
		case '{':
			dst, err = d.decodeObject(dst, first)
			if err != nil {
				return dst, err
			}
		case ']':
			if i == 0 {
				return dst, badFrame("empty array: a frame must carry at least one command")
			}
			if _, err := dec.ReadToken(); err != nil {
				return dst, d.syntaxError(err)
			}
			return dst, nil
		case jsontext.KindInvalid:
			_, rerr := dec.ReadToken()
			return dst, d.syntaxError(rerr)
		default:
			return dst, badFrame("array element " + strconv.Itoa(i) + " must be an object, not " + kindName(k))
		}
	}
}

// decodeObject decodes one object of commands; the decoder is at '{'.
// first is the index in dst of the frame's first command, used to count
// the frame's commands.
func (d *decoder) decodeObject(dst []Command, first int) ([]Command, *Error) {
	dec := &d.dec
	start := len(dst)
	if _, err := dec.ReadToken(); err != nil {
		return dst, d.syntaxError(err)
	}
	var ref []byte
	hasRef, hasAck := false, false
	for {
		if dec.PeekKind() == '}' {
			if _, err := dec.ReadToken(); err != nil {
				return dst, d.syntaxError(err)
			}
			break
		}
		raw, err := dec.ReadValue() // the quoted name
		if err != nil {
			return dst, d.syntaxError(err)
		}
		key := raw[1 : len(raw)-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var e error
			if key, e = jsontext.AppendUnquote(nil, raw); e != nil {
				return dst, d.syntaxError(e) // cannot happen: jsontext validated it
			}
		}
		if bytes.IndexByte(key, '.') >= 0 {
			if nameDot(key) < 0 {
				return dst, &Error{Code: CodeUnknownAction, Message: "invalid action name " + quoteKey(key)}
			}
			if len(dst)-first >= d.lim.MaxCommands {
				return dst, &Error{Code: CodeTooLarge, Message: "frame carries more than " + strconv.Itoa(d.lim.MaxCommands) + " commands"}
			}
			name := intern(key)
			args, err := dec.ReadValue()
			if err != nil {
				return dst, d.syntaxError(err)
			}
			dst = append(dst, Command{Name: name, Args: args})
			continue
		}
		if string(key) == Ack {
			if hasAck {
				return dst, badFrame("duplicate \"ack\" in an object")
			}
			hasAck = true
			if len(dst)-first >= d.lim.MaxCommands {
				return dst, &Error{Code: CodeTooLarge, Message: "frame carries more than " + strconv.Itoa(d.lim.MaxCommands) + " commands"}
			}
			v, err := dec.ReadValue()
			if err != nil {
				return dst, d.syntaxError(err)
			}
			if _, ok := ParseSeq(v); !ok {
				return dst, badFrame("\"ack\" must be a message number (an integer from 0 to 18446744073709551615), not " + shortValue(v))
			}
			dst = append(dst, Command{Name: Ack, Args: v})
			continue
		}
		if string(key) != "ref" {
			return dst, badFrame("unknown reserved key " + quoteKey(key))
		}
		if hasRef {
			return dst, badFrame("duplicate \"ref\" in an object")
		}
		hasRef = true
		v, err := dec.ReadValue()
		if err != nil {
			return dst, d.syntaxError(err)
		}
		if k := v.Kind(); k != '"' && k != '0' {
			return dst, badFrame("\"ref\" must be a string or a number, not " + kindName(k))
		}
		ref = v
	}
	if len(dst) == start {
		return dst, badFrame("object carries no command (a command is a key of the form \"Controller.action\")")
	}
	if ref != nil {
		for i := start; i < len(dst); i++ {
			if dst[i].Name != Ack {
				dst[i].Ref = ref
			}
		}
	}
	return dst, nil
}

// tooDeep reports whether arrays and objects in b nest deeper than max. It
// is one pass over the bytes that skips strings (honouring escapes) and
// counts brackets; on valid JSON it is exact, on invalid JSON it may say
// anything, the parser reporting the syntax error then.
func tooDeep(b []byte, max int) bool {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b); i++ {
				if c := b[i]; c == '\\' {
					i++ // skip the escaped byte
				} else if c == '"' {
					break
				}
			}
		case '[', '{':
			depth++
			if depth > max {
				return true
			}
		case ']', '}':
			depth--
		}
	}
	return false
}

// badFrame returns a CodeBadFrame error.
func badFrame(msg string) *Error {
	return &Error{Code: CodeBadFrame, Message: msg}
}

// syntaxError converts an error of jsontext into a CodeBadFrame error and
// records that it is a syntax error.
func (d *decoder) syntaxError(err error) *Error {
	d.syntax = true
	var se *jsontext.SyntacticError
	if errors.As(err, &se) {
		msg := "unexpected end of frame"
		if se.Err != io.ErrUnexpectedEOF {
			if se.Err != nil {
				msg = se.Err.Error()
			} else {
				msg = se.Error()
			}
		}
		return &Error{Code: CodeBadFrame, Message: "invalid JSON at byte " + strconv.FormatInt(se.ByteOffset, 10) + ": " + msg}
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &Error{Code: CodeBadFrame, Message: "invalid JSON: unexpected end of frame"}
	}
	return &Error{Code: CodeBadFrame, Message: "invalid JSON: " + err.Error()}
}

// kindName names a JSON kind for error messages.
func kindName(k jsontext.Kind) string {
	switch k {
	case 'n':
		return "null"
	case 'f', 't':
		return "a boolean"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case '{':
		return "an object"
	case '[':
		return "an array"
	}
	return "invalid JSON"
}

// quoteKey quotes a key for an error message, shortened to at most
// maxKeyInMessage bytes (cut on a rune boundary).
func quoteKey(key []byte) string {
	s, cut := head(key, 64)
	if cut {
		return strconv.Quote(s) + "..."
	}
	return strconv.Quote(s)
}
