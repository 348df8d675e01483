package protocol

import (
	"strings"
	"testing"
)

// benchSingle is a ~200-byte frame with one command and a ref.
var benchSingle = []byte(`{"ref":"c1a7","Chat.say":{"room":"lobby","text":"Hello everyone! This is a typical chat message of moderate length, long enough to be realistic.","meta":{"n":42,"tags":["a","b"]}}}`)

// benchArray is an array of 10 objects of one command each, every other one
// with a ref.
var benchArray = func() []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := range 10 {
		if i > 0 {
			b.WriteByte(',')
		}
		if i%2 == 0 {
			b.WriteString(`{"ref":` + string(rune('0'+i)) + `,"Chat.say":{"room":"lobby","text":"hello"}}`)
		} else {
			b.WriteString(`{"Echo.echo":[1,2,3]}`)
		}
	}
	b.WriteByte(']')
	return []byte(b.String())
}()

func BenchmarkDecodeSingle(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchSingle)))
	var cmds []Command
	for b.Loop() {
		var err error
		cmds, err = Decode(benchSingle, Limits{}, cmds[:0])
		if err != nil || len(cmds) != 1 {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeArray10(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchArray)))
	var cmds []Command
	for b.Loop() {
		var err error
		cmds, err = Decode(benchArray, Limits{}, cmds[:0])
		if err != nil || len(cmds) != 10 {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeTooDeep measures the rejection of a 64 KiB frame whose
// excess nesting is at its very end: one scan, nothing built.
func BenchmarkDecodeTooDeep(b *testing.B) {
	frame := []byte(`{"Echo.echo":"` + strings.Repeat(`x\"`, 20000) + `","Echo.deep":` +
		strings.Repeat("[", 2000) + strings.Repeat("]", 2000) + `}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := Decode(frame, Limits{}, nil); err == nil {
			b.Fatal("no error")
		}
	}
}

func BenchmarkAppendResult(b *testing.B) {
	ref := []byte(`"c1a7"`)
	result := []byte(`{"id":1,"title":"Blue in Green","artist":"Miles Davis","year":1959}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendResult(buf[:0], ref, "Song.show", result)
	}
}
