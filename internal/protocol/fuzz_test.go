package protocol

import (
	"bytes"
	"errors"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// FuzzDecode checks the invariants of Decode on arbitrary frames. The seed
// corpus is in testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"ref":1,"Echo.echo":"hi"}`), uint8(0), uint8(0))
	f.Fuzz(func(t *testing.T, frame []byte, maxDepth, maxCommands uint8) {
		lim := Limits{MaxDepth: int(maxDepth % 40), MaxCommands: int(maxCommands % 120)}
		norm := lim.normalize()
		orig := string(frame)
		prefix := []Command{{Name: "Keep.me"}}

		cmds, err := Decode(frame, lim, prefix)

		if string(frame) != orig {
			t.Fatalf("Decode modified the frame")
		}
		if len(cmds) == 0 || cmds[0].Name != "Keep.me" {
			t.Fatalf("Decode lost dst's commands")
		}
		got := cmds[1:]
		if err != nil {
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			switch perr.Code {
			case CodeBadFrame, CodeUnknownAction, CodeTooLarge:
			default:
				t.Fatalf("unexpected code %q", perr.Code)
			}
			if perr.Message == "" {
				t.Fatalf("empty message for code %q", perr.Code)
			}
			if len(got) != 0 {
				t.Fatalf("error %v with %d commands", err, len(got))
			}
			// A frame that is valid JSON nested within the limit is never
			// reported as invalid JSON.
			if perr.Code == CodeBadFrame && len(perr.Message) >= 12 && perr.Message[:12] == "invalid JSON" &&
				jsontext.Value(frame).IsValid(jsontext.AllowDuplicateNames(true)) && !tooDeep(frame, norm.MaxDepth) {
				t.Fatalf("valid JSON reported as %v", err)
			}
			return
		}
		// Success: the frame is valid JSON, within the limits.
		if !jsontext.Value(frame).IsValid(jsontext.AllowDuplicateNames(true)) {
			t.Fatalf("invalid JSON accepted")
		}
		if tooDeep(frame, norm.MaxDepth) {
			t.Fatalf("frame deeper than %d accepted", norm.MaxDepth)
		}
		if len(got) == 0 {
			t.Fatalf("success without commands")
		}
		if len(got) > norm.MaxCommands {
			t.Fatalf("%d commands > MaxCommands %d", len(got), norm.MaxCommands)
		}
		pos := 0 // Args appear in the frame in order
		for i, c := range got {
			j := bytes.Index(frame[pos:], c.Args)
			if j < 0 {
				t.Fatalf("command %d: args %q not found in order in the frame", i, c.Args)
			}
			pos += j + len(c.Args)
			if _, _, ok := SplitName(c.Name); !ok {
				t.Fatalf("command %d: invalid name %q", i, c.Name)
			}
			if !jsontext.Value(c.Args).IsValid(jsontext.AllowDuplicateNames(true)) {
				t.Fatalf("command %d: invalid args %q", i, c.Args)
			}
			if c.Ref != nil {
				v := jsontext.Value(c.Ref)
				if !v.IsValid() || (v.Kind() != '"' && v.Kind() != '0') {
					t.Fatalf("command %d: invalid ref %q", i, c.Ref)
				}
			}
		}
	})
}
