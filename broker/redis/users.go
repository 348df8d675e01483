package redis

import (
	"context"
	"fmt"
	"strings"

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
-- server ('' when away), away_until}, removing stale ids from the set.
local function user_clients(uid, now)
  local uk = user_key(uid)
  local out = {}
  for _, id in ipairs(redis.call('SMEMBERS', uk)) do
    local srv, au = state(id, now)
    if srv and redis.call('HGET', client_key(id), 'user') == uid then
      out[#out + 1] = {id, srv, au}
    else
      redis.call('SREM', uk, id)
    end
  end
  return out
end
`

// luaUserClientsList: ARGV prefix, user id. Returns {client id, server,
// ...} for each live client of the user (an empty server when away).
const luaUserClientsList = `
local res = {}
for _, c in ipairs(user_clients(ARGV[2], now_ms())) do
  res[#res + 1] = c[1]
  res[#res + 1] = c[2]
end
return res
`

// luaSendUser: ARGV prefix, mailbox size, from server id, user id, data.
// Appends data to the inbox of the server of each live client of the user
// but those on from, or to its mailbox when it is away. Returns {client
// id, server, ...} for every live client of the user.
const luaSendUser = `
local size, from, data = tonumber(ARGV[2]), ARGV[3], ARGV[5]
local res = {}
for _, c in ipairs(user_clients(ARGV[4], now_ms())) do
  local id, srv, au = c[1], c[2], c[3]
  if srv == '' then
    redis.call('RPUSH', mail_key(id), data)
    bound_mail(id, size, au)
  elseif srv ~= from then
    redis.call('RPUSH', inbox_key(srv), id .. ' ' .. data)
  end
  res[#res + 1] = id
  res[#res + 1] = srv
end
return res
`

// luaForgetUser: ARGV prefix, user id, reason. Forgets every live client
// of the user (hash, mail, away entry, server set) and appends a kick entry
// "<space><client id> <reason>" to the inbox of the server of each
// connected one; deletes the user's set. Returns {client id, server, ...}
// for the clients forgotten.
const luaForgetUser = `
local uid, reason = ARGV[2], ARGV[3]
local res = {}
for _, c in ipairs(user_clients(uid, now_ms())) do
  local id, srv = c[1], c[2]
  if srv ~= '' then
    redis.call('SREM', set_key(srv), id)
    redis.call('RPUSH', inbox_key(srv), ' ' .. id .. ' ' .. reason)
  end
  redis.call('DEL', client_key(id), mail_key(id))
  redis.call('ZREM', AWAY, id)
  res[#res + 1] = id
  res[#res + 1] = srv
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
// client of userID but those on from, and to the mailbox of each away one.
// A nil error means Redis accepted the message for every client returned.
func (b *Broker) SendUser(ctx context.Context, from, userID string, data []byte) ([]broker.Client, error) {
	op := "send to user " + userID
	if err := b.enter(ctx, op); err != nil {
		return nil, err
	}
	return b.userScript(op, userID,
		b.run(ctx, b.lua.sendUser, b.cfg.Prefix, b.sizeArg, from, userID, string(data)))
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

// userScript decodes the {client id, server, ...} answer of a user script.
func (b *Broker) userScript(op, userID string, r rueidis.RedisResult) ([]broker.Client, error) {
	flat, err := r.AsStrSlice()
	if err != nil {
		return nil, b.fail(op, err)
	}
	if len(flat)%2 != 0 {
		return nil, b.fail(op, fmt.Errorf("script answered %d strings, want pairs", len(flat)))
	}
	out := make([]broker.Client, 0, len(flat)/2)
	for i := 0; i < len(flat); i += 2 {
		out = append(out, broker.Client{ID: flat[i], Server: flat[i+1], User: userID})
	}
	return out, nil
}

// kick handles a kick entry of the inbox of s ("<client id> <reason>",
// the entry without its leading space): the client is no longer s's to
// reclaim, and s's Handler is asked to close it.
func (b *Broker) kick(s *server, entry string) {
	id, reason, _ := strings.Cut(entry, " ")
	b.mu.Lock()
	delete(s.clients, id)
	b.mu.Unlock()
	if k, ok := s.h.(broker.Kicker); ok {
		k.Kick(id, reason)
	}
}
