package protocol

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// cmd is a compact expected Command: name, args, ref ("" for none).
type cmd struct{ name, args, ref string }

func (c cmd) String() string { return fmt.Sprintf("{%s %s ref=%s}", c.name, c.args, c.ref) }

func toCmds(cs []Command) []cmd {
	out := make([]cmd, len(cs))
	for i, c := range cs {
		out[i] = cmd{c.Name, string(c.Args), string(c.Ref)}
		if c.Ref != nil && len(c.Ref) == 0 {
			out[i].ref = "<empty non-nil>"
		}
	}
	return out
}

func TestDecodeValid(t *testing.T) {
	tests := []struct {
		name  string
		frame string
		want  []cmd
	}{
		{"object", `{"Song.show": {"id": 1}}`, []cmd{{"Song.show", `{"id": 1}`, ""}}},
		{"whitespace around", " \t\r\n{\"Song.show\":1} \n", []cmd{{"Song.show", `1`, ""}}},
		{"ref number before", `{"ref": 7, "Echo.echo": "hi"}`, []cmd{{"Echo.echo", `"hi"`, "7"}}},
		{"ref number after", `{"Echo.echo": "hi", "ref": -1.5e3}`, []cmd{{"Echo.echo", `"hi"`, "-1.5e3"}}},
		{"ref string before", `{"ref":"a1","Echo.echo":null}`, []cmd{{"Echo.echo", `null`, `"a1"`}}},
		{"ref string after", `{"Echo.echo":true,"ref":"a\"1"}`, []cmd{{"Echo.echo", `true`, `"a\"1"`}}},
		{"ref between commands", `{"A.a":1,"ref":2,"B.b":3}`, []cmd{{"A.a", "1", "2"}, {"B.b", "3", "2"}}},
		{"ref empty string", `{"ref":"","A.a":1}`, []cmd{{"A.a", "1", `""`}}},
		{"ack alone", `{"ack":12}`, []cmd{{"ack", "12", ""}}},
		{"ack zero", `{ "ack" : 0 }`, []cmd{{"ack", "0", ""}}},
		{"ack max", `{"ack":18446744073709551615}`, []cmd{{"ack", "18446744073709551615", ""}}},
		{"ack with commands and ref", `{"A.a":1,"ack":3,"ref":9,"B.b":2}`, []cmd{{"A.a", "1", "9"}, {"ack", "3", ""}, {"B.b", "2", "9"}}},
		{"ack in array", `[{"ack":1},{"A.a":1}]`, []cmd{{"ack", "1", ""}, {"A.a", "1", ""}}},
		{"several commands", `{"A.a":1,"B.b":[2],"C.c":{"x":3}}`, []cmd{{"A.a", "1", ""}, {"B.b", "[2]", ""}, {"C.c", `{"x":3}`, ""}}},
		{"duplicate commands kept in order", `{"Echo.echo":1,"Echo.echo":2}`, []cmd{{"Echo.echo", "1", ""}, {"Echo.echo", "2", ""}}},
		{"duplicate commands with ref", `{"Echo.echo":1,"ref":"r","Echo.echo":2}`, []cmd{{"Echo.echo", "1", `"r"`}, {"Echo.echo", "2", `"r"`}}},
		{"array", `[{"Chat.join": {"room": "lobby", "name": "ann"}}, {"ref": "a1", "Chat.say": {"room": "lobby", "text": "hello"}}]`,
			[]cmd{{"Chat.join", `{"room": "lobby", "name": "ann"}`, ""}, {"Chat.say", `{"room": "lobby", "text": "hello"}`, `"a1"`}}},
		{"ref per array element", `[{"ref":1,"A.a":1},{"A.a":2},{"A.a":3,"ref":"x"}]`,
			[]cmd{{"A.a", "1", "1"}, {"A.a", "2", ""}, {"A.a", "3", `"x"`}}},
		{"array of one", `[{"A.a":{}}]`, []cmd{{"A.a", "{}", ""}}},
		{"nested args", `{"A.a":{"b":[1,{"c":[[],{}]},"d"],"e":{"f":{"g":null}}}}`, []cmd{{"A.a", `{"b":[1,{"c":[[],{}]},"d"],"e":{"f":{"g":null}}}`, ""}}},
		{"args with reserved-looking keys", `{"A.a":{"ref":1,"x":2,"B.b":3}}`, []cmd{{"A.a", `{"ref":1,"x":2,"B.b":3}`, ""}}},
		{"args any JSON", `{"A.a":"s","B.b":1.5,"C.c":false,"D.d":null,"E.e":[]}`,
			[]cmd{{"A.a", `"s"`, ""}, {"B.b", "1.5", ""}, {"C.c", "false", ""}, {"D.d", "null", ""}, {"E.e", "[]", ""}}},
		{"duplicate keys inside args", `{"A.a":{"x":1,"x":2}}`, []cmd{{"A.a", `{"x":1,"x":2}`, ""}}},
		{"unicode escape in name", `{"Echo.\u0065cho":1}`, []cmd{{"Echo.echo", "1", ""}}},
		{"unicode escape in ref key", `{"r\u0065f":1,"A.a":2}`, []cmd{{"A.a", "2", "1"}}},
		{"unicode escapes in args", `{"Chat.say":{"text":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n"}}`,
			[]cmd{{"Chat.say", `{"text":"caf\u00e9 \ud83d\ude00 \"q\" \\ \n"}`, ""}}},
		{"raw UTF-8 in args", `{"Chat.say":{"text":"café 😀 日本"}}`, []cmd{{"Chat.say", `{"text":"café 😀 日本"}`, ""}}},
		{"escaped ref", `{"ref":"\u0041\n","A.a":1}`, []cmd{{"A.a", "1", `"\u0041\n"`}}},
		{"name with digits and underscore", `{"My_Ctl2.do_it_3":1}`, []cmd{{"My_Ctl2.do_it_3", "1", ""}}},
		{"depth 32 accepted", `{"A.a":` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}`,
			[]cmd{{"A.a", strings.Repeat("[", 31) + strings.Repeat("]", 31), ""}}},
		{"brackets inside strings do not count", `{"A.a":"` + strings.Repeat("[{", 100) + `\"` + strings.Repeat("[", 50) + `"}`,
			[]cmd{{"A.a", `"` + strings.Repeat("[{", 100) + `\"` + strings.Repeat("[", 50) + `"`, ""}}},
		{"100 commands", manyCommands(100), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.frame), Limits{}, nil)
			if err != nil {
				t.Fatalf("Decode(%q): %v", tt.frame, err)
			}
			if tt.want == nil { // only count
				if len(got) == 0 {
					t.Fatalf("Decode(%q): no commands", tt.frame)
				}
				return
			}
			if g := toCmds(got); fmt.Sprint(g) != fmt.Sprint(tt.want) {
				t.Errorf("Decode(%q)\n got %v\nwant %v", tt.frame, g, tt.want)
			}
			for _, c := range got {
				if c.Ref != nil && cap(c.Ref) != len(c.Ref) || cap(c.Args) != len(c.Args) {
					t.Errorf("Args/Ref of %q have spare capacity: appending to them would overwrite the frame", c.Name)
				}
			}
		})
	}
}

func manyCommands(n int) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"C%d.a%d":%d`, i, i, i)
	}
	b.WriteByte('}')
	return b.String()
}

func manyObjects(n int) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"C.a":%d}`, i)
	}
	b.WriteByte(']')
	return b.String()
}

func TestDecodeErrors(t *testing.T) {
	deep33 := `{"A.a":` + strings.Repeat("[", 32) + strings.Repeat("]", 32) + `}`
	tests := []struct {
		name  string
		frame string
		lim   Limits
		code  string
		msg   string // substring expected in the message
	}{
		{"empty", ``, Limits{}, CodeBadFrame, "empty frame"},
		{"only whitespace", " \n\t ", Limits{}, CodeBadFrame, "empty frame"},
		{"invalid JSON", `{"A.a":1,}`, Limits{}, CodeBadFrame, "invalid JSON at byte 8: invalid character ','"},
		{"invalid JSON literal", `{"A.a":tru}`, Limits{}, CodeBadFrame, "invalid JSON at byte"},
		{"unterminated object", `{"A.a":1`, Limits{}, CodeBadFrame, "unexpected end of frame"},
		{"unterminated array", `[{"A.a":1}`, Limits{}, CodeBadFrame, "unexpected end of frame"},
		{"unterminated string", `{"A.a":"x`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"single quotes", `{'A.a':1}`, Limits{}, CodeBadFrame, "invalid JSON at byte 1"},
		{"missing colon", `{"A.a" 1}`, Limits{}, CodeBadFrame, "invalid JSON at byte 7: invalid character '1' after object name"},
		{"bad escape", `{"A.a":"\x"}`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"bad unicode escape", `{"A.a":"\u12"}`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"invalid UTF-8 in value", "{\"A.a\":\"\xff\"}", Limits{}, CodeBadFrame, "UTF-8"},
		{"invalid UTF-8 in key", "{\"A.\xc3\":1}", Limits{}, CodeBadFrame, "UTF-8"},
		{"surrogate half UTF-8", "{\"A.a\":\"\xed\xa0\x80\"}", Limits{}, CodeBadFrame, "UTF-8"},
		{"invalid UTF-8 outside strings", "{\"A.a\":1}\xff", Limits{}, CodeBadFrame, "invalid JSON"},
		{"trailing object", `{"A.a":1} {"B.b":2}`, Limits{}, CodeBadFrame, "trailing data after the top-level value at byte 10"},
		{"trailing garbage", `{"A.a":1}x`, Limits{}, CodeBadFrame, "invalid JSON at byte 9"},
		{"trailing after array", `[{"A.a":1}]]`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"null", `null`, Limits{}, CodeBadFrame, "must be a JSON object or array, not null"},
		{"number", `42`, Limits{}, CodeBadFrame, "not a number"},
		{"string", `"A.a"`, Limits{}, CodeBadFrame, "not a string"},
		{"boolean", `true`, Limits{}, CodeBadFrame, "not a boolean"},
		{"invalid top-level and bad JSON", `"x`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"array element number", `[{"A.a":1},2]`, Limits{}, CodeBadFrame, "array element 1 must be an object, not a number"},
		{"array element array", `[[{"A.a":1}]]`, Limits{}, CodeBadFrame, "array element 0 must be an object, not an array"},
		{"array element null", `[null]`, Limits{}, CodeBadFrame, "not null"},
		{"empty array", `[]`, Limits{}, CodeBadFrame, "empty array"},
		{"empty object", `{}`, Limits{}, CodeBadFrame, "no command"},
		{"only ref", `{"ref":1}`, Limits{}, CodeBadFrame, "no command"},
		{"empty object in array", `[{"A.a":1},{}]`, Limits{}, CodeBadFrame, "no command"},
		{"ref null", `{"ref":null,"A.a":1}`, Limits{}, CodeBadFrame, `"ref" must be a string or a number, not null`},
		{"ref object", `{"A.a":1,"ref":{"x":1}}`, Limits{}, CodeBadFrame, "not an object"},
		{"ref array", `{"ref":[1],"A.a":1}`, Limits{}, CodeBadFrame, "not an array"},
		{"ref bool", `{"ref":false,"A.a":1}`, Limits{}, CodeBadFrame, "not a boolean"},
		{"duplicate ref", `{"ref":1,"A.a":1,"ref":2}`, Limits{}, CodeBadFrame, `duplicate "ref"`},
		{"duplicate ack", `{"ack":1,"ack":2}`, Limits{}, CodeBadFrame, `duplicate "ack"`},
		{"ack negative", `{"ack":-1}`, Limits{}, CodeBadFrame, `"ack" must be a message number`},
		{"ack fraction", `{"ack":1.5}`, Limits{}, CodeBadFrame, `not 1.5`},
		{"ack exponent", `{"ack":1e3}`, Limits{}, CodeBadFrame, `not 1e3`},
		{"ack string", `{"ack":"1"}`, Limits{}, CodeBadFrame, `not "1"`},
		{"ack null", `{"ack":null}`, Limits{}, CodeBadFrame, `not null`},
		{"ack too big", `{"ack":18446744073709551616}`, Limits{}, CodeBadFrame, `"ack" must be a message number`},
		{"ack over command limit", `{"A.a":1,"ack":1}`, Limits{MaxCommands: 1}, CodeTooLarge, "more than 1 commands"},
		{"duplicate ref escaped", `{"ref":1,"A.a":1,"\u0072ef":1}`, Limits{}, CodeBadFrame, `duplicate "ref"`},
		{"unknown reserved key", `{"x":1,"A.a":1}`, Limits{}, CodeBadFrame, `unknown reserved key "x"`},
		{"unknown reserved key after", `{"A.a":1,"Ref":1}`, Limits{}, CodeBadFrame, `unknown reserved key "Ref"`},
		{"empty key", `{"":1,"A.a":1}`, Limits{}, CodeBadFrame, `unknown reserved key ""`},
		{"long reserved key shortened", `{"` + strings.Repeat("k", 1000) + `":1}`, Limits{}, CodeBadFrame, `kkk"...`},
		{"too deep", deep33, Limits{}, CodeTooLarge, "JSON nested deeper than 32 levels"},
		{"too deep custom", `[{"A.a":[1]}]`, Limits{MaxDepth: 2}, CodeTooLarge, "JSON nested deeper than 2 levels"},
		{"too deep and invalid", strings.Repeat("[", 100000), Limits{}, CodeTooLarge, "deeper than 32"},
		{"too deep beyond jsontext", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), Limits{MaxDepth: 1 << 30}, CodeTooLarge, "deeper than 10000"},
		{"too many commands", manyCommands(101), Limits{}, CodeTooLarge, "more than 100 commands"},
		{"too many commands in array", manyObjects(101), Limits{}, CodeTooLarge, "more than 100 commands"},
		{"too many commands custom", `[{"A.a":1,"A.a":2},{"A.a":3}]`, Limits{MaxCommands: 2}, CodeTooLarge, "more than 2 commands"},
		{"name two dots", `{"a.b.c":1}`, Limits{}, CodeUnknownAction, `invalid action name "a.b.c"`},
		{"name leading dot", `{".x":1}`, Limits{}, CodeUnknownAction, `invalid action name ".x"`},
		{"name trailing dot", `{"Song.":1}`, Limits{}, CodeUnknownAction, `invalid action name "Song."`},
		{"name with space", `{"So ng.x":1}`, Limits{}, CodeUnknownAction, `invalid action name "So ng.x"`},
		{"name only dot", `{".":1}`, Limits{}, CodeUnknownAction, `invalid action name "."`},
		{"name with dash", `{"Song.show-all":1}`, Limits{}, CodeUnknownAction, `"Song.show-all"`},
		{"name non-ASCII", `{"Sóng.show":1}`, Limits{}, CodeUnknownAction, `"Sóng.show"`},
		{"name escaped control", `{"A.a\u0000":1}`, Limits{}, CodeUnknownAction, `"A.a\x00"`},
		{"invalid name after valid", `{"A.a":1,"B.b.c":2}`, Limits{}, CodeUnknownAction, `"B.b.c"`},
		{"invalid name in array", `[{"A.a":1},{"ref":1,"x..y":2}]`, Limits{}, CodeUnknownAction, `"x..y"`},
		// A frame that is not valid JSON is a bad_frame, whatever comes first.
		{"bad name then bad JSON", `{"a.b.c":1,}`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"reserved key then bad JSON", `{"x":1,"A.a":}`, Limits{}, CodeBadFrame, "invalid JSON"},
		{"too many then bad JSON", manyCommands(101)[:len(manyCommands(101))-1], Limits{}, CodeBadFrame, "unexpected end of frame"},
		{"not object then bad JSON", `[1,`, Limits{}, CodeBadFrame, "invalid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := []Command{{Name: "Keep.me", Args: []byte("0")}}
			got, err := Decode([]byte(tt.frame), tt.lim, prefix)
			if err == nil {
				t.Fatalf("Decode(%.80q) = %v, want error %s", tt.frame, toCmds(got), tt.code)
			}
			var perr *Error
			if !errors.As(err, &perr) {
				t.Fatalf("Decode(%.80q) error %T %v, want *Error", tt.frame, err, err)
			}
			if perr.Code != tt.code {
				t.Errorf("Decode(%.80q) code %q (%s), want %q", tt.frame, perr.Code, perr.Message, tt.code)
			}
			if !strings.Contains(perr.Message, tt.msg) {
				t.Errorf("Decode(%.80q) message %q, want it to contain %q", tt.frame, perr.Message, tt.msg)
			}
			if len(got) != 1 || got[0].Name != "Keep.me" {
				t.Errorf("Decode(%.80q) returned commands %v on error, want dst unchanged", tt.frame, toCmds(got))
			}
			if want := perr.Code + ": " + perr.Message; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestDecodeKeepsDst(t *testing.T) {
	dst := make([]Command, 1, 8)
	dst[0] = Command{Name: "Old.one"}
	got, err := Decode([]byte(`{"New.one":1,"New.two":2}`), Limits{}, dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Name != "Old.one" || got[1].Name != "New.one" || got[2].Name != "New.two" {
		t.Fatalf("got %v", toCmds(got))
	}
	// On error, the commands appended before the failure are cleared.
	got, err = Decode([]byte(`{"New.one":1,"x":2}`), Limits{}, got[:1])
	if err == nil || len(got) != 1 {
		t.Fatalf("got %v, %v", toCmds(got), err)
	}
	if c := got[:2][1]; c.Name != "" || c.Args != nil {
		t.Errorf("spare element not cleared: %v", c)
	}
}

func TestDecodeOrder(t *testing.T) {
	const n = 50
	var b strings.Builder
	b.WriteString(`{"ref":"order",`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		// Names out of alphabetical order, some repeated.
		fmt.Fprintf(&b, `"C%d.act":%d`, (n-i)%17, i)
	}
	b.WriteByte('}')
	got, err := Decode([]byte(b.String()), Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n {
		t.Fatalf("got %d commands, want %d", len(got), n)
	}
	for i, c := range got {
		if want := fmt.Sprintf("C%d.act", (n-i)%17); c.Name != want || string(c.Args) != fmt.Sprint(i) || string(c.Ref) != `"order"` {
			t.Errorf("command %d = %v, want {%s %d \"order\"}", i, toCmds(got[i:i+1]), want, i)
		}
	}
}

func TestDecodeDoesNotModifyFrame(t *testing.T) {
	frame := []byte(`[{"ref":1,"A.a":{"x":"\u00e9"}},{"B.b":[1,2]}] `)
	orig := string(frame)
	if _, err := Decode(frame, Limits{}, nil); err != nil {
		t.Fatal(err)
	}
	if string(frame) != orig {
		t.Fatalf("frame modified: %q", frame)
	}
}

func TestDecodeAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts need a normal build")
	}
	dst := make([]Command, 0, 16)
	Decode(benchSingle, Limits{}, dst) // warm the intern table
	Decode(benchArray, Limits{}, dst)
	for _, frame := range [][]byte{benchSingle, benchArray} {
		allocs := testing.AllocsPerRun(100, func() {
			if _, err := Decode(frame, Limits{}, dst[:0]); err != nil {
				t.Fatal(err)
			}
		})
		if allocs > 1 {
			t.Errorf("Decode(%.40q...) allocates %v times per run", frame, allocs)
		}
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		name, ctl, act string
		ok             bool
	}{
		{"Song.show", "Song", "show", true},
		{"a.b", "a", "b", true},
		{"My_Ctl2.do_it_3", "My_Ctl2", "do_it_3", true},
		{"_._", "_", "_", true},
		{"1.2", "1", "2", true},
		{"", "", "", false},
		{"Song", "", "", false},
		{".", "", "", false},
		{".x", "", "", false},
		{"Song.", "", "", false},
		{"a.b.c", "", "", false},
		{"a..b", "", "", false},
		{"So ng.x", "", "", false},
		{"Song.sh-ow", "", "", false},
		{"Sóng.show", "", "", false},
		{"Song.show\x00", "", "", false},
		{"Song.show\n", "", "", false},
	}
	for _, tt := range tests {
		ctl, act, ok := SplitName(tt.name)
		if ctl != tt.ctl || act != tt.act || ok != tt.ok {
			t.Errorf("SplitName(%q) = %q, %q, %v; want %q, %q, %v", tt.name, ctl, act, ok, tt.ctl, tt.act, tt.ok)
		}
	}
}

func TestIntern(t *testing.T) {
	a := intern([]byte("Song.show"))
	b := intern([]byte("Song.show"))
	if a != "Song.show" || b != "Song.show" {
		t.Fatalf("intern = %q, %q", a, b)
	}
	long := strings.Repeat("x", internMaxLen+1)
	if got := intern([]byte(long)); got != long {
		t.Fatalf("intern(long) = %q", got)
	}
	// Many distinct names: every one comes back right.
	for i := range 5000 {
		s := fmt.Sprintf("C%d.a", i)
		if got := intern([]byte(s)); got != s {
			t.Fatalf("intern(%q) = %q", s, got)
		}
	}
}

func TestLimitsNormalize(t *testing.T) {
	tests := []struct{ in, want Limits }{
		{Limits{}, Limits{MaxDepth: 32, MaxCommands: 100}},
		{Limits{MaxDepth: -1, MaxCommands: -5}, Limits{MaxDepth: 32, MaxCommands: 100}},
		{Limits{MaxDepth: 5, MaxCommands: 7}, Limits{MaxDepth: 5, MaxCommands: 7}},
		{Limits{MaxDepth: 1 << 20, MaxCommands: 1 << 20}, Limits{MaxDepth: 10000, MaxCommands: 1 << 20}},
	}
	for _, tt := range tests {
		if got := tt.in.normalize(); got != tt.want {
			t.Errorf("%+v.normalize() = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestTooDeep(t *testing.T) {
	tests := []struct {
		s    string
		max  int
		want bool
	}{
		{`[]`, 1, false},
		{`[[]]`, 1, true},
		{`{"a":{"b":[1]}}`, 3, false},
		{`{"a":{"b":[1]}}`, 2, true},
		{`{"a":"[[[[\"[["}`, 1, false},
		{`{"a":"\\","b":[[]]}`, 2, true},    // the string ends after an escaped backslash
		{`{"a":"\\\"[[[","b":1}`, 1, false}, // escaped quote does not end the string
		{`["\\\\"]`, 1, false},
		{`"`, 1, false},
		{`"\`, 1, false},
		{`[[["\`, 2, true},
	}
	for _, tt := range tests {
		if got := tooDeep([]byte(tt.s), tt.max); got != tt.want {
			t.Errorf("tooDeep(%q, %d) = %v, want %v", tt.s, tt.max, got, tt.want)
		}
	}
}

// TestDecodeConcurrent runs Decode from many goroutines (pooled decoders,
// shared intern table); run it with -race.
func TestDecodeConcurrent(t *testing.T) {
	frames := []string{
		`{"ref":1,"Echo.echo":"a"}`,
		`[{"Chat.join":{"room":"r"}},{"ref":"x","Chat.say":{"text":"t"}}]`,
		`{"Bad.":1}`,
		`{"A.a":1,`,
	}
	done := make(chan bool)
	for g := range 8 {
		go func() {
			defer func() { done <- true }()
			var dst []Command
			for i := range 500 {
				f := frames[(g+i)%len(frames)]
				var err error
				dst, err = Decode([]byte(f), Limits{}, dst[:0])
				switch (g + i) % len(frames) {
				case 0:
					if err != nil || len(dst) != 1 || dst[0].Name != "Echo.echo" || string(dst[0].Ref) != "1" {
						t.Errorf("%s: %v %v", f, toCmds(dst), err)
						return
					}
				case 1:
					if err != nil || len(dst) != 2 || dst[1].Name != "Chat.say" || string(dst[1].Ref) != `"x"` {
						t.Errorf("%s: %v %v", f, toCmds(dst), err)
						return
					}
				default:
					if err == nil || len(dst) != 0 {
						t.Errorf("%s: %v %v", f, toCmds(dst), err)
						return
					}
				}
			}
		}()
	}
	for range 8 {
		<-done
	}
}
