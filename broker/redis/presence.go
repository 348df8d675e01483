package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Presence entries live in one hash per room, P presence:<room>, whose
// fields are client ids and whose values are
//
//	<server id> <joined at, unix ms> <length of data> <data><leave message>
//
// and in one set per server, P server:<id>:presence, of "<client id>
// <room>" members, so that the cleanup of a server (UnregisterServer, or
// the reaper for a dead one) finds its entries, removes them and publishes
// their leave messages on the rooms' channels, in the same script.

// luaPresence holds the helpers of the presence scripts; it needs luaBase.
const luaPresence = `
local function presence_key(room) return P .. 'presence:' .. room end
local function presence_set(sid) return P .. 'server:' .. sid .. ':presence' end
-- entry_server returns the server id of a presence entry.
local function entry_server(v) return string.sub(v, 1, string.find(v, ' ', 1, true) - 1) end
-- entry_leave returns the leave message of a presence entry.
local function entry_leave(v)
  local a = string.find(v, ' ', 1, true)
  local b = string.find(v, ' ', a + 1, true)
  local c = string.find(v, ' ', b + 1, true)
  return string.sub(v, c + 1 + tonumber(string.sub(v, b + 1, c - 1)))
end
`

// luaDropPresence needs luaPresence.
const luaDropPresence = `
-- drop_presence removes the presence entries of server sid and publishes
-- their leave messages on their rooms' channels, from no server; it
-- returns the number of entries removed.
local function drop_presence(sid)
  local sk = presence_set(sid)
  local n = 0
  for _, e in ipairs(redis.call('SMEMBERS', sk)) do
    local sp = string.find(e, ' ', 1, true)
    if sp then
      local id, room = string.sub(e, 1, sp - 1), string.sub(e, sp + 1)
      local hk = presence_key(room)
      local v = redis.call('HGET', hk, id)
      if v and entry_server(v) == sid then
        redis.call('HDEL', hk, id)
        n = n + 1
        local leave = entry_leave(v)
        if leave ~= '' then redis.call('PUBLISH', P .. 'room:' .. room, ' ' .. leave) end
      end
    end
  end
  redis.call('DEL', sk)
  return n
end
`

// luaPresenceAdd: ARGV prefix, room, client id, server id, joined at (unix
// ms), data, leave message. Returns 0 when the server is not in the
// servers set (it was reaped), 1 when the entry was recorded.
const luaPresenceAdd = `
local room, id, sid = ARGV[2], ARGV[3], ARGV[4]
if not redis.call('ZSCORE', SERVERS, sid) then return 0 end
local hk = presence_key(room)
local member = id .. ' ' .. room
local old = redis.call('HGET', hk, id)
if old then
  local osid = entry_server(old)
  if osid ~= sid then redis.call('SREM', presence_set(osid), member) end
end
redis.call('HSET', hk, id, sid .. ' ' .. ARGV[5] .. ' ' .. #ARGV[6] .. ' ' .. ARGV[6] .. ARGV[7])
redis.call('SADD', presence_set(sid), member)
return 1
`

// luaPresenceRemove: ARGV prefix, room, client id, server id. Returns 1
// when the entry was the server's and is removed, 0 otherwise.
const luaPresenceRemove = `
local room, id, sid = ARGV[2], ARGV[3], ARGV[4]
local hk = presence_key(room)
local old = redis.call('HGET', hk, id)
if not old or entry_server(old) ~= sid then return 0 end
redis.call('HDEL', hk, id)
redis.call('SREM', presence_set(sid), id .. ' ' .. room)
return 1
`

// PresenceAdd records m in room (the hash P presence:<room>, field
// m.ClientID), replacing the client's entry there, and indexes it under
// m.ServerID, which must be registered on this Broker. JoinedAt is kept
// to the millisecond. It fails with ErrUnknownServer, too, when the
// server is missing from the servers set (it was reaped while cut off
// from Redis, and has not reclaimed its place yet). Client ids must not
// contain spaces.
func (b *Broker) PresenceAdd(ctx context.Context, room string, m broker.Member) error {
	op := "presence add " + m.ClientID + " in " + room
	if m.ClientID == "" || strings.Contains(m.ClientID, " ") {
		return fmt.Errorf("redis: presence add: invalid client id %q", m.ClientID)
	}
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	if b.local(m.ServerID) == nil {
		return unknownServer(op, m.ServerID)
	}
	added, err := b.run(ctx, b.lua.presenceAdd, b.cfg.Prefix, room, m.ClientID, m.ServerID,
		strconv.FormatInt(m.JoinedAt.UnixMilli(), 10), string(m.Data), string(m.LeaveMessage)).AsInt64()
	if err != nil {
		return b.fail(op, err)
	}
	if added == 0 {
		return fmt.Errorf("redis: %s: server %q is not in the servers set (reaped while cut off from Redis?): %w",
			op, m.ServerID, broker.ErrUnknownServer)
	}
	return nil
}

// PresenceRemove removes the entry of clientID in room if serverID added
// it, and reports whether it did.
func (b *Broker) PresenceRemove(ctx context.Context, room, clientID, serverID string) (bool, error) {
	op := "presence remove " + clientID + " from " + room
	if err := b.enter(ctx, op); err != nil {
		return false, err
	}
	n, err := b.run(ctx, b.lua.presenceRemove, b.cfg.Prefix, room, clientID, serverID).AsInt64()
	if err != nil {
		return false, b.fail(op, err)
	}
	return n == 1, nil
}

// Presence returns the entries of room (one HGETALL), without their leave
// messages. Entries that do not parse are logged and left out.
func (b *Broker) Presence(ctx context.Context, room string) ([]broker.Member, error) {
	op := "presence of " + room
	if err := b.enter(ctx, op); err != nil {
		return nil, err
	}
	fields, err := b.do(ctx, b.rdb.B().Hgetall().Key(b.cfg.Prefix+"presence:"+room).Build()).AsStrMap()
	if err != nil {
		return nil, b.fail(op, err)
	}
	out := make([]broker.Member, 0, len(fields))
	for id, v := range fields {
		m, err := parseEntry(id, v)
		if err != nil {
			b.log.Warn("redis broker: malformed presence entry left out", "room", room, "client", id, "err", err)
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

// parseEntry decodes the presence entry v of clientID, leaving out its
// leave message.
func parseEntry(clientID, v string) (broker.Member, error) {
	sid, rest, ok1 := strings.Cut(v, " ")
	joined, rest, ok2 := strings.Cut(rest, " ")
	size, rest, ok3 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !ok3 {
		return broker.Member{}, errors.New("missing fields")
	}
	ms, err := strconv.ParseInt(joined, 10, 64)
	if err != nil {
		return broker.Member{}, fmt.Errorf("joined at: %w", err)
	}
	n, err := strconv.Atoi(size)
	if err != nil || n < 0 || n > len(rest) {
		return broker.Member{}, fmt.Errorf("bad data length %q", size)
	}
	return broker.Member{
		ClientID: clientID,
		ServerID: sid,
		Data:     []byte(rest[:n]),
		JoinedAt: time.UnixMilli(ms),
	}, nil
}
