package protocol

import (
	"encoding/json"
	"testing"

	"github.com/go-json-experiment/json/jsontext"
)

// hard is a string needing every kind of escape: quotes, backslashes,
// control characters, non-ASCII, characters that need no escape in JSON
// (HTML, U+2028) and invalid UTF-8 (replaced by U+FFFD).
const hard = "a\"b\\c/d\n\t\r\x00\x1f\x7fé😀<>&\u2028\xff"

// hardJSON is hard as jsontext.AppendQuote writes it.
const hardJSON = `"a\"b\\c/d\n\t\r\u0000\u001f` + "\x7fé😀<>&\u2028\ufffd" + `"`

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"Song.show", `"Song.show"`},
		{"plain ASCII with spaces ~!", `"plain ASCII with spaces ~!"`},
		{`"`, `"\""`},
		{`\`, `"\\"`},
		{"\b\f\n\r\t", `"\b\f\n\r\t"`},
		{"\x01", `"\u0001"`},
		{"日本", `"日本"`},
		{hard, hardJSON},
	}
	for _, tt := range tests {
		got := appendString([]byte("x"), tt.in)
		if string(got) != "x"+tt.want {
			t.Errorf("appendString(%q) = %s, want %s", tt.in, got[1:], tt.want)
		}
		if !json.Valid(got[1:]) || !jsontext.Value(got[1:]).IsValid() {
			t.Errorf("appendString(%q) = %s: invalid JSON", tt.in, got[1:])
		}
	}
}

func TestAppenders(t *testing.T) {
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"welcome", AppendWelcome(nil, "c-1", "s-1", "tok", false, false),
			`{"welcome":{"client":"c-1","server":"s-1","session":"tok","resumed":false}}`},
		{"welcome resumed", AppendWelcome(nil, "c-1", "s-2", "tok", true, false),
			`{"welcome":{"client":"c-1","server":"s-2","session":"tok","resumed":true}}`},
		{"welcome escapes", AppendWelcome(nil, hard, `"`, `\`, false, false),
			`{"welcome":{"client":` + hardJSON + `,"server":"\"","session":"\\","resumed":false}}`},
		{"welcome acks", AppendWelcome(nil, "c-1", "s-1", "tok", true, true),
			`{"welcome":{"client":"c-1","server":"s-1","session":"tok","resumed":true,"acks":true}}`},
		{"numbered", AppendNumbered(nil, 12, []byte(`{"Chat.whisper":{"text":"hi"}}`)),
			`{"seq":12,"message":{"Chat.whisper":{"text":"hi"}}}`},
		{"numbered string", AppendNumbered(nil, 18446744073709551615, []byte(`"x"`)),
			`{"seq":18446744073709551615,"message":"x"}`},
		{"result", AppendResult(nil, []byte("7"), "Song.show", []byte(`{"id":1}`)),
			`{"ref":7,"action":"Song.show","result":{"id":1}}`},
		{"result string ref", AppendResult(nil, []byte(`"a\"1"`), "Echo.echo", []byte(`"hi"`)),
			`{"ref":"a\"1","action":"Echo.echo","result":"hi"}`},
		{"result no ref no result", AppendResult(nil, nil, "Echo.echo", nil),
			`{"action":"Echo.echo","result":null}`},
		{"result escapes", AppendResult(nil, []byte("1"), hard, []byte(`[1,"x"]`)),
			`{"ref":1,"action":` + hardJSON + `,"result":[1,"x"]}`},
		{"reply error", AppendReplyError(nil, []byte(`"r"`), "Song.show", CodeBadArgs, "id must be a number"),
			`{"ref":"r","action":"Song.show","error":{"code":"bad_args","message":"id must be a number"}}`},
		{"reply error escapes", AppendReplyError(nil, []byte("2"), "A.b", CodeActionFailed, hard),
			`{"ref":2,"action":"A.b","error":{"code":"action_failed","message":` + hardJSON + `}}`},
		{"reply error no ref", AppendReplyError(nil, nil, "A.b", CodeInternal, "x"),
			`{"action":"A.b","error":{"code":"internal_error","message":"x"}}`},
		{"error", AppendError(nil, CodeBadFrame, `invalid JSON at byte 3: invalid character 'x'`),
			`{"error":{"code":"bad_frame","message":"invalid JSON at byte 3: invalid character 'x'"}}`},
		{"error escapes", AppendError(nil, CodeUnknownAction, `invalid action name "a.b.c"`+"\n"+hard),
			`{"error":{"code":"unknown_action","message":"invalid action name \"a.b.c\"\n` + hardJSON[1:] + `}}`},
		{"action error", AppendActionError(nil, "Song.show", CodeUnauthorized, "login first"),
			`{"error":{"code":"unauthorized","message":"login first","action":"Song.show"}}`},
		{"action error escapes", AppendActionError(nil, hard, CodeRateLimited, hard),
			`{"error":{"code":"rate_limited","message":` + hardJSON + `,"action":` + hardJSON + `}}`},
		{"push", AppendPush(nil, "Chat.message", []byte(`{"room":"lobby","from":"ann","text":"hi"}`)),
			`{"Chat.message":{"room":"lobby","from":"ann","text":"hi"}}`},
		{"push escapes", AppendPush(nil, hard, []byte(`"x"`)),
			`{` + hardJSON + `:"x"}`},
		{"push empty value", AppendPush(nil, "A.b", nil), `{"A.b":null}`},
		{"appends to dst", AppendError([]byte(`[`), "c", "m"), `[{"error":{"code":"c","message":"m"}}`},
	}
	for _, tt := range tests {
		if string(tt.got) != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
		v := tt.got
		if tt.name == "appends to dst" {
			v = v[1:]
		}
		if !json.Valid(v) || !jsontext.Value(v).IsValid() {
			t.Errorf("%s: %s is not valid JSON", tt.name, v)
		}
	}
}

// TestRoundTrip checks that replies carry back the ref exactly as decoded.
func TestRoundTrip(t *testing.T) {
	cmds, err := Decode([]byte(`{"Echo.echo":{"a":[1,"\u00e9"]},"ref":"x\"y"}`), Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := cmds[0]
	got := AppendResult(nil, c.Ref, c.Name, c.Args)
	want := `{"ref":"x\"y","action":"Echo.echo","result":{"a":[1,"\u00e9"]}}`
	if string(got) != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

func TestAppendAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts need a normal build")
	}
	buf := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(100, func() {
		buf = AppendResult(buf[:0], []byte("1"), "Song.show", []byte(`{"id":1}`))
		buf = AppendWelcome(buf[:0], "c", "s", "t", true, true)
		buf = AppendNumbered(buf[:0], 1234, []byte(`{"A.b":1}`))
		buf = AppendActionError(buf[:0], "A.b", CodeBadArgs, "bad \"x\"")
	})
	if allocs != 0 {
		t.Errorf("appenders allocate %v times per run", allocs)
	}
}
