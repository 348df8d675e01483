package rocket

import (
	"encoding/json"
	"testing"
)

// BenchmarkBind decodes the arguments of a typical command into a struct
// with Context.Bind, and with encoding/json for comparison.
func BenchmarkBind(b *testing.B) {
	type whisper struct {
		To   string `json:"to"`
		Text string `json:"text"`
	}
	args := json.RawMessage(`{"to":"12345","text":"0000000123 1764085252123456789 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)
	b.Run("Bind", func(b *testing.B) {
		c := &Context{action: "Chat.whisper", args: args}
		b.ReportAllocs()
		for range b.N {
			var w whisper
			if err := c.Bind(&w); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var w whisper
			if err := json.Unmarshal(args, &w); err != nil {
				b.Fatal(err)
			}
		}
	})
}
