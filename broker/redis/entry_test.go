package redis

import (
	"testing"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/internal/redistest"
)

// luaEntryRoundTrip parses ARGV[2] with parse_entry and writes it again
// with the entry_* function of its kind; it returns the kind and the
// entry written (nothing for a malformed entry).
const luaEntryRoundTrip = `
local kind, id, seq, data = parse_entry(ARGV[2])
if not kind then return {} end
local e
if kind == 'message' then e = entry_message(id, data)
elseif kind == 'numbered' then e = entry_numbered(id, seq, data)
else e = entry_kick(id, data) end
return {kind, e}
`

// TestInboxEntries: every kind of inbox entry goes through Go's encode,
// Lua's parse_entry and entry_* (luaEntry, what the scripts use) and Go's
// decodeEntry unchanged; malformed entries are refused by both.
func TestInboxEntries(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	rt := rueidis.NewLuaScript(luaBase + luaEntry + luaEntryRoundTrip)
	kinds := map[entryKind]string{entryMessage: "message", entryNumbered: "numbered", entryKick: "kick"}
	for _, tc := range []struct {
		name string
		e    entry
		want string
	}{
		{"message", entry{kind: entryMessage, id: "1gfsqnqm-7", data: `{"Chat.say":"a b"}`}, `1gfsqnqm-7 {"Chat.say":"a b"}`},
		{"message, empty data", entry{kind: entryMessage, id: "12"}, `12 `},
		{"numbered", entry{kind: entryNumbered, id: "1gfsqnqm-7", seq: 18446744073709551615, data: `{"n":1}`}, `1gfsqnqm-7#18446744073709551615 {"n":1}`},
		{"kick", entry{kind: entryKick, id: "1gfsqnqm-7", data: "user disconnected"}, ` 1gfsqnqm-7 user disconnected`},
		{"kick, empty reason", entry{kind: entryKick, id: "3"}, ` 3 `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.e.encode()
			if raw != tc.want {
				t.Fatalf("encode = %q, want %q", raw, tc.want)
			}
			res, err := rt.Exec(t.Context(), b.rdb, nil, []string{b.cfg.Prefix, raw}).AsStrSlice()
			if err != nil || len(res) != 2 {
				t.Fatalf("Lua round trip of %q: %v %v", raw, res, err)
			}
			if res[0] != kinds[tc.e.kind] || res[1] != raw {
				t.Fatalf("Lua round trip of %q = kind %q, %q; want %q, unchanged", raw, res[0], res[1], kinds[tc.e.kind])
			}
			got, ok := decodeEntry(res[1])
			if !ok || got != tc.e {
				t.Fatalf("decodeEntry(%q) = %+v, %v; want %+v", res[1], got, ok, tc.e)
			}
		})
	}
	for _, raw := range []string{"", "no-space", " no-reason-space"} {
		if e, ok := decodeEntry(raw); ok {
			t.Errorf("decodeEntry(%q) = %+v, want it refused", raw, e)
		}
		res, err := rt.Exec(t.Context(), b.rdb, nil, []string{b.cfg.Prefix, raw}).AsStrSlice()
		if err != nil || len(res) != 0 {
			t.Errorf("Lua parse_entry(%q) = %v %v, want it refused", raw, res, err)
		}
	}
	for _, raw := range []string{"7#x data", "#3 data"} {
		if e, ok := decodeEntry(raw); ok {
			t.Errorf("decodeEntry(%q) = %+v, want it refused", raw, e)
		}
	}
}
