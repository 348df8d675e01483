package redis

import (
	"context"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/broker"
)

// Users: Connect records a client's user id in its hash (field user) and
// adds the client to the user's set, P user:<user id>:clients. Forget,
// expiry and a Connect that replaces the record under another user remove
// it; Resume and the cleanup of a server leave it (the client is away, not
// gone). Nothing of a user belongs to a server, so a dead server leaves
// nothing to clean up here: its clients go away and stay listed.
//
// The scripts below read the set, check each client (a client that expired
// or was recorded under another user is removed from the set on the way:
// the set may briefly hold such stale ids when a client key expired in
// Redis before the sweeper forgot it) and act on the live ones.
//
// ForgetUser reaches the servers of the connected clients through their
// inboxes: it appends "<space><client id> <reason>" to each one. A client
// id is never empty, so the entry's empty client id marks it as a kick;
// the consumer calls the Handler's Kick (broker.Kicker) for it, after the
// messages before it. The cleanup of a dead server drops such entries
// (they name no client).

// luaUserClients needs luaBase, luaNow, luaKeys, luaExpire and luaState.
const luaUserClients = `
-- user_clients returns the live clients of user uid as a list of {id,
-- server ('' when away), away_until (nil when connected), acked},
-- removing stale ids from the set.
local function user_clients(uid, now)
  local uk = user_key(uid)
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', uk)) do
    local srv, au, acked = state(id, now)
    if srv and redis.call('HGET', client_key(id), 'user') == uid then
      out[#out + 1] = {id, srv, au, acked}
    else
      redis.call('SREM', uk, id)
    end
  end
  return out
end
`

// luaUserClientsList: ARGV prefix, user id. Returns {client id, server,
// acked, ...} for each live client of the user (an empty server when
// away; acked '1' or ”).
const luaUserClientsList = `
local res = {}
for _, c in ipairs(user_clients(ARGV[2], now_ms())) do
  res[#res + 1] = c[1]
  res[#res + 1] = c[2]
  res[#res + 1] = c[4] and '1' or ''
end
return res
`

// luaSendUser: ARGV prefix, mailbox size, mailbox bytes, from server id,
// user id, data.
// Delivers data (see deliver) to each live client of the user but those
// on from that do not acknowledge. Returns {client id, server, acked,
// ...} for every live client of the user.
const luaSendUser = `
local size, maxb, from, data = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[6]
local res = {}
for _, c in ipairs(user_clients(ARGV[5], now_ms())) do
  local id, srv, au, acked = c[1], c[2], c[3], c[4]
  if acked or srv == '' or srv ~= from then deliver(id, srv, au, acked, data, size, maxb) end
  res[#res + 1] = id
  res[#res + 1] = srv
  res[#res + 1] = acked and '1' or ''
end
return res
`

// luaForgetUser: ARGV prefix, user id, reason. Forgets every live client
// of the user (hash, mail, away entry, server set) and appends a kick entry
// "<space><client id> <reason>" to the inbox of the server of each
// connected one; deletes the user's set. Returns {client id, server, ...}
// for the clients forgotten (and acked, '1' or ”).
const luaForgetUser = `
local uid, reason = ARGV[2], ARGV[3]
local res = {}
for _, c in ipairs(user_clients(uid, now_ms())) do
  local id, srv = c[1], c[2]
  if srv ~= '' then
    redis.call('SREM', set_key(srv), id)
    redis.call('RPUSH', inbox_key(srv), entry_kick(srv, id, reason))
  end
  redis.call('DEL', client_key(id), mail_key(id))
  redis.call('ZREM', AWAY, id)
  res[#res + 1] = id
  res[#res + 1] = srv
  res[#res + 1] = c[4] and '1' or ''
end
redis.call('DEL', user_key(uid))
return res
`

// UserClients returns the clients of userID, connected or away, without
// their sessions (one script: the user's set, each client's hash).
func (b *Broker) UserClients(ctx context.Context, userID string) ([]broker.Client, error) {
	op := "clients of user " + userID
	if err := b.enter(ctx, op); err != nil {
		return nil, err
	}
	return b.userScript(op, userID, b.run(ctx, b.lua.userClients, b.cfg.Prefix, userID))
}

// SendUser appends data, in one script, to the inbox of the server of each
// client of userID but those on from that do not acknowledge, and to the
// mailbox of each away one (and of each one that acknowledges).
// A nil error means Redis accepted the message for every client returned.
func (b *Broker) SendUser(ctx context.Context, from, userID string, data []byte) ([]broker.Client, error) {
	op := "send to user " + userID
	if err := b.enter(ctx, op); err != nil {
		return nil, err
	}
	if err := b.fits(op, data); err != nil {
		return nil, err
	}
	return b.userScript(op, userID,
		b.run(ctx, b.lua.sendUser, b.cfg.Prefix, b.sizeArg, b.bytesArg, from, userID, string(data)))
}

// ForgetUser forgets, in one script, every client of userID with its
// session and mail, and appends a kick to the inbox of the server holding
// each connected one; that server's consumer calls its Handler's Kick
// (if it implements broker.Kicker) after the messages before it. Reasons
// should be short: each kick carries the reason whole.
func (b *Broker) ForgetUser(ctx context.Context, userID, reason string) ([]broker.Client, error) {
	op := "forget user " + userID
	if err := b.enter(ctx, op); err != nil {
		return nil, err
	}
	forgotten, err := b.userScript(op, userID,
		b.run(ctx, b.lua.forgetUser, b.cfg.Prefix, userID, reason))
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	for _, c := range forgotten {
		for _, s := range b.servers {
			delete(s.clients, c.ID)
		}
	}
	b.mu.Unlock()
	return forgotten, nil
}

// userScript decodes the {client id, server, acked, ...} answer of a user
// script.
func (b *Broker) userScript(op, userID string, r rueidis.RedisResult) ([]broker.Client, error) {
	flat, err := r.AsStrSlice()
	if err != nil {
		return nil, b.fail(op, err)
	}
	if len(flat)%3 != 0 {
		return nil, b.fail(op, fmt.Errorf("script answered %d strings, want triples", len(flat)))
	}
	out := make([]broker.Client, 0, len(flat)/3)
	for i := 0; i < len(flat); i += 3 {
		out = append(out, broker.Client{ID: flat[i], Server: flat[i+1], User: userID, Acked: flat[i+2] == "1"})
	}
	return out, nil
}

// kick handles a kick entry of the inbox of s: the client id is no
// longer s's to reclaim, and s's Handler is asked to close it.
func (b *Broker) kick(s *server, id, reason string) {
	b.mu.Lock()
	delete(s.clients, id)
	b.mu.Unlock()
	if k, ok := s.h.(broker.Kicker); ok {
		k.Kick(id, reason)
	}
}
