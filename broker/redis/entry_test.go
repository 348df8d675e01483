package redis

import (
	"slices"
	"strconv"
	"testing"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/brokertest"
	"github.com/rocket-go/rocket/internal/redistest"
)

// luaEntryRoundTrip parses ARGV[3] with parse_entry and writes it again,
// for the inbox of server ARGV[2], with the entry_* function of its kind;
// it returns the kind and the entry written (empty for none), nothing for a
// malformed entry.
const luaEntryRoundTrip = `
local sid = ARGV[2]
local kind, id, seq, data = parse_entry(ARGV[3])
if not kind then return {} end
local e
if kind == 'message' then e = entry_message(sid, id, data)
elseif kind == 'numbered' then e = entry_numbered(sid, id, seq, data)
elseif kind == 'kick' then e = entry_kick(sid, id, data)
elseif kind == 'returned' then e = entry_returned(sid, id)
else e = entry_replaced(sid, id) end
return {kind, e or ''}
`

// Server ids of the two inbox versions, as the scripts tell them apart.
const (
	oldServer = "17"   // a node of a release before version 1
	newServer = "17v1" // this release's
)

// TestInboxEntries: every kind of inbox entry goes through Go's encode,
// Lua's parse_entry and entry_* (luaEntry, what the scripts use) and Go's
// decodeEntry unchanged, in both versions: each version's entries are
// read by both, and written again in the version the inbox's server
// reads. Malformed entries are refused by both.
func TestInboxEntries(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	rt := rueidis.NewLuaScript(luaBase + luaEntry + luaEntryRoundTrip)
	roundTrip := func(t *testing.T, sid, raw string) []string {
		t.Helper()
		res, err := rt.Exec(t.Context(), b.rdb, nil, []string{b.cfg.Prefix, sid, raw}).AsStrSlice()
		if err != nil {
			t.Fatalf("Lua round trip of %q for server %s: %v", raw, sid, err)
		}
		return res
	}
	kinds := map[entryKind]string{entryMessage: "message", entryNumbered: "numbered", entryKick: "kick", entryReplaced: "replaced", entryReturned: "returned"}
	for _, tc := range []struct {
		name   string
		e      entry
		v1, v0 string // encoded in each version ("": none)
	}{
		{"message", entry{kind: entryMessage, id: "1gfsqnqm-7", data: `{"Chat.say":"a b"}`},
			`#1m 1gfsqnqm-7 {"Chat.say":"a b"}`, `1gfsqnqm-7 {"Chat.say":"a b"}`},
		{"message, empty data", entry{kind: entryMessage, id: "12"}, `#1m 12 `, `12 `},
		{"message, data like an entry", entry{kind: entryMessage, id: "12", data: "#1n 3 4 x"}, `#1m 12 #1n 3 4 x`, `12 #1n 3 4 x`},
		{"numbered", entry{kind: entryNumbered, id: "1gfsqnqm-7", seq: 18446744073709551615, data: `{"n":1}`},
			`#1n 1gfsqnqm-7 18446744073709551615 {"n":1}`, `1gfsqnqm-7#18446744073709551615 {"n":1}`},
		{"numbered, empty data", entry{kind: entryNumbered, id: "9", seq: 1}, `#1n 9 1 `, `9#1 `},
		{"kick", entry{kind: entryKick, id: "1gfsqnqm-7", data: "user disconnected"},
			`#1k 1gfsqnqm-7 user disconnected`, ` 1gfsqnqm-7 user disconnected`},
		{"kick, empty reason", entry{kind: entryKick, id: "3"}, `#1k 3 `, ` 3 `},
		{"replaced", entry{kind: entryReplaced, id: "1gfsqnqm-7"}, `#1r 1gfsqnqm-7`, ``},
		{"returned", entry{kind: entryReturned, id: "1gfsqnqm-7"}, `#1e 1gfsqnqm-7`, ``},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, v := range []struct {
				version int
				sid     string
				raw     string
			}{{1, newServer, tc.v1}, {0, oldServer, tc.v0}} {
				raw := tc.e.encode(v.version)
				if raw != v.raw {
					t.Fatalf("encode(%d) = %q, want %q", v.version, raw, v.raw)
				}
				if raw == "" {
					continue // no such entry in this version
				}
				// Read by Lua, written again for each version's server.
				for _, w := range []struct {
					sid, want string
				}{{newServer, tc.v1}, {oldServer, tc.v0}} {
					res := roundTrip(t, w.sid, raw)
					if len(res) != 2 || res[0] != kinds[tc.e.kind] || res[1] != w.want {
						t.Fatalf("Lua round trip of %q for server %s = %q; want kind %q, %q", raw, w.sid, res, kinds[tc.e.kind], w.want)
					}
					if w.want == "" {
						continue // not written for this server
					}
					got, ok := decodeEntry(res[1])
					if !ok || got != tc.e {
						t.Fatalf("decodeEntry(%q) = %+v, %v; want %+v", res[1], got, ok, tc.e)
					}
				}
			}
		})
	}
	// Refused by both.
	for _, raw := range []string{
		"", "no-space", " no-reason-space",
		"#", "#1", "#1m", "#1m ", "#1m id", "#1m  data", "#1x id data", "#2m id data", "#1mid data",
		"#1n id", "#1n id 3", "#1n id x data", "#1n id -3 data", "#1k id", "#3 data",
		"#1r", "#1r ", "#1r id data", "#1r id ",
	} {
		if e, ok := decodeEntry(raw); ok {
			t.Errorf("decodeEntry(%q) = %+v, want it refused", raw, e)
		}
		if res := roundTrip(t, newServer, raw); len(res) != 0 {
			t.Errorf("Lua parse_entry(%q) = %q, want it refused", raw, res)
		}
	}
	// Refused by Go; Lua reads only their kind and id (the cleanup's
	// use), which these would not name.
	for _, raw := range []string{"7#x data", "#1n id 18446744073709551616 data"} {
		if e, ok := decodeEntry(raw); ok {
			t.Errorf("decodeEntry(%q) = %+v, want it refused", raw, e)
		}
	}
}

// TestServerIDs: server ids are marked as reading version 1 entries, and
// their numbers are what the floor and the heartbeat's counter go by.
func TestServerIDs(t *testing.T) {
	for id, want := range map[string]uint64{"17v1": 17, "17": 17, "1v1": 1} {
		if n, ok := serverNumber(id); !ok || n != want {
			t.Errorf("serverNumber(%q) = %d, %v; want %d", id, n, ok, want)
		}
	}
	for _, id := range []string{"", "v1", "x17", "17v2"} {
		if n, ok := serverNumber(id); ok {
			t.Errorf("serverNumber(%q) = %d, want refused", id, n)
		}
	}
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	id, err := b.RegisterServer(t.Context(), new(brokertest.Recorder))
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := serverNumber(id); !ok || id != strconv.FormatUint(n, 10)+serverMark {
		t.Fatalf("server id %q, want a number and %q", id, serverMark)
	}
}

// registerOld records a server the way a node of a release before
// version 1 registers one (luaRegister of then: a decimal id from the
// counter and a heartbeat), and returns its id. No consumer reads its
// inbox.
func registerOld(t *testing.T, b *Broker) string {
	t.Helper()
	sid := strconv.FormatInt(rawInt(t, b, "INCR", b.cfg.Prefix+"server_ids"), 10)
	now := rawInt(t, b, "EVAL", "local t = redis.call('TIME') return t[1] * 1000", "0")
	rawDo(t, b, "ZADD", b.cfg.Prefix+"servers", strconv.FormatInt(now, 10), sid)
	return sid
}

// connectOld records c on the old server sid the way the connect script
// of then does (the fields it wrote).
func connectOld(t *testing.T, b *Broker, c broker.Client, sid string) {
	t.Helper()
	ck := b.cfg.Prefix + "client:" + c.ID
	rawDo(t, b, "HSET", ck, "server", sid, "session", sessionHash(c.Session))
	if c.Acked {
		rawDo(t, b, "HSET", ck, "acked", "1", "seq", "0")
	}
	if c.User != "" {
		rawDo(t, b, "HSET", ck, "user", c.User)
		rawDo(t, b, "SADD", b.cfg.Prefix+"user:"+c.User+":clients", c.ID)
	}
	rawDo(t, b, "SADD", b.cfg.Prefix+"server:"+sid+":clients", c.ID)
}

// inbox returns the entries of the inbox of server sid.
func inbox(t *testing.T, b *Broker, sid string) []string {
	t.Helper()
	got, err := b.rdb.Do(t.Context(), b.rdb.B().Lrange().Key(b.inboxPrefix+sid).Start(0).Stop(-1).Build()).AsStrSlice()
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestOldServerEntries: during a rolling restart, every script of this
// release that writes into the inbox of a server of a release before
// (registered as its node did) writes the version 0 forms that node
// reads: Send, SendUser, ForgetUser's kick and the cleanup that moves a
// dead server's messages; and a Resume that takes a client from it
// writes no replaced entry.
func TestOldServerEntries(t *testing.T) {
	srv := redistest.Start(t)
	b := newBroker(t, srv, Config{})
	ctx := t.Context()
	old := registerOld(t, b)
	connectOld(t, b, broker.Client{ID: "p-1", Session: "s", User: "ann"}, old)
	connectOld(t, b, broker.Client{ID: "a-2", Session: "s", User: "ann", Acked: true}, old)
	connectOld(t, b, broker.Client{ID: "m-3", Session: "s"}, old)
	connectOld(t, b, broker.Client{ID: "r-4", Session: "s"}, old)
	for _, c := range []string{"p-1", "a-2"} {
		if err := b.Send(ctx, c, []byte("hi "+c)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.SendUser(ctx, "", "ann", []byte("to ann")); err != nil {
		t.Fatal(err)
	}
	// A dead server of this release whose inbox holds a message for m-3,
	// which moved to the old server since: the cleanup moves it there.
	dead := "99" + serverMark
	rawDo(t, b, "ZADD", b.cfg.Prefix+"servers", "1", dead)
	rawDo(t, b, "RPUSH", b.inboxPrefix+dead, entry{kind: entryMessage, id: "m-3", data: "moved"}.encode(1))
	if err := b.exec(ctx, b.lua.cleanup, b.cfg.Prefix, dead, "unregister", "0", b.ttlArg, b.sizeArg, b.bytesArg).Error(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.ForgetUser(ctx, "ann", "bye now"); err != nil {
		t.Fatal(err)
	}
	sid, err := b.RegisterServer(ctx, new(brokertest.Recorder))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Resume(ctx, "r-4", "s", sid, 0); err != nil {
		t.Fatal(err)
	}
	got := inbox(t, b, old)
	want := []string{"p-1 hi p-1", "a-2#1 hi a-2", "a-2#2 to ann", "p-1 to ann", "m-3 moved", " p-1 bye now", " a-2 bye now"}
	// SendUser and ForgetUser take the user's clients in no set order.
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	if !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("inbox of the old server = %q, want %q in some order", got, want)
	}
	for _, raw := range got {
		if _, ok := decodeEntry0(raw); !ok {
			t.Errorf("entry %q is not of version 0", raw)
		}
	}
}
