package redis

import (
	"strings"

	"github.com/redis/rueidis"
)

// Every change that touches more than one key is one Lua script, so that
// concurrent nodes never see it half done. Scripts get the key prefix as
// ARGV[1] and build key names from it (standalone Redis only: a cluster
// would need every key declared and in one slot). Times come from the Redis
// server's clock (TIME), so that nodes with skewed clocks agree.

// Parts of the scripts: luaBase and then, in this order, the helpers that a
// script uses (each helper may use those listed before it). Scripts include
// only what they use, as Redis runs the whole text at every call.

const luaBase = `
local P = ARGV[1]
local AWAY = P .. 'away'
local SERVERS = P .. 'servers'
local GRACE = 60000
`

const luaNow = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`

const luaInt = `
-- int formats an integer-valued number without an exponent.
local function int(n) return string.format('%d', n) end
`

const luaKeys = `
local function client_key(id) return P .. 'client:' .. id end
local function mail_key(id) return P .. 'mail:' .. id end
local function set_key(sid) return P .. 'server:' .. sid .. ':clients' end
local function inbox_key(sid) return P .. 'inbox:' .. sid end
local function user_key(uid) return P .. 'user:' .. uid .. ':clients' end
`

// luaEntry writes and reads inbox entries, the one place in Lua that
// knows their encoding and which version a server reads (entry.go has the
// same in Go and documents both versions; doc.go too). The entry_*
// functions take the id of the server whose inbox the entry goes to and
// write the version it reads.
const luaEntry = `
-- server_id returns the id of the server numbered n, marked as reading
-- version 1 entries.
local V1 = 'v1' -- serverMark in entry.go
local function server_id(n) return n .. V1 end
-- reads_v1 tells whether server sid reads version 1 entries; the servers
-- of nodes of before read version 0 only.
local function reads_v1(sid) return string.sub(sid, -2) == V1 end
local function entry_message(sid, id, data)
  if reads_v1(sid) then return '#1m ' .. id .. ' ' .. data end
  return id .. ' ' .. data
end
local function entry_numbered(sid, id, seq, data)
  if reads_v1(sid) then return '#1n ' .. id .. ' ' .. seq .. ' ' .. data end
  return id .. '#' .. seq .. ' ' .. data
end
local function entry_kick(sid, id, reason)
  if reads_v1(sid) then return '#1k ' .. id .. ' ' .. reason end
  return ' ' .. id .. ' ' .. reason
end
-- entry_replaced returns the replaced entry of client id, or nil for a
-- server that does not read them.
local function entry_replaced(sid, id)
  if reads_v1(sid) then return '#1r ' .. id end
  return nil
end
-- entry_returned returns the returned entry of client id, or nil for a
-- server that does not read them.
local function entry_returned(sid, id)
  if reads_v1(sid) then return '#1e ' .. id end
  return nil
end
local kinds = {m = 'message', n = 'numbered', k = 'kick', r = 'replaced', e = 'returned'}
-- parse_entry returns the kind of entry e ('message', 'numbered', 'kick'
-- or 'replaced'), the client id, the number (numbered only) and the data
-- (the reason of a kick); nothing for a malformed entry. It reads both
-- versions (version 0, for one release more: see entry.go).
local function parse_entry(e)
  if string.byte(e, 1) == 35 then -- '#': version 1
    local kind = kinds[string.sub(e, 3, 3)]
    if not kind or string.sub(e, 1, 2) ~= '#1' or string.sub(e, 4, 4) ~= ' ' then return nil end
    if kind == 'replaced' or kind == 'returned' then
      local id = string.sub(e, 5)
      if id == '' or string.find(id, ' ', 1, true) then return nil end
      return kind, id, nil, nil
    end
    local sp = string.find(e, ' ', 5, true)
    if not sp or sp == 5 then return nil end
    local id, data = string.sub(e, 5, sp - 1), string.sub(e, sp + 1)
    if kind ~= 'numbered' then return kind, id, nil, data end
    local sp2 = string.find(data, ' ', 1, true)
    if not sp2 then return nil end
    local seq = string.sub(data, 1, sp2 - 1)
    if not string.match(seq, '^%d+$') then return nil end
    return kind, id, seq, string.sub(data, sp2 + 1)
  end
  local sp = string.find(e, ' ', 1, true)
  if not sp then return nil end
  if sp == 1 then
    local sp2 = string.find(e, ' ', 2, true)
    if not sp2 then return nil end
    return 'kick', string.sub(e, 2, sp2 - 1), nil, string.sub(e, sp2 + 1)
  end
  local id = string.sub(e, 1, sp - 1)
  local hash = string.find(id, '#', 1, true)
  if hash then
    return 'numbered', string.sub(id, 1, hash - 1), string.sub(id, hash + 1), string.sub(e, sp + 1)
  end
  return 'message', id, nil, string.sub(e, sp + 1)
end
`

const luaRaiseCounter = `
-- raise_counter makes the id counter name at least the number id starts
-- with ("17" of "17v1"), if it starts with one.
local function raise_counter(name, id)
  local digits = string.match(id, '^%d+')
  if not digits then return end
  local key = P .. name
  if (tonumber(redis.call('GET', key)) or 0) < tonumber(digits) then redis.call('SET', key, digits) end
end
`

const luaExpire = `
-- expire forgets an away client and counts its mail as expired.
local function expire(id)
  local n = redis.call('LLEN', mail_key(id))
  if n > 0 then redis.call('INCRBY', P .. 'stats:mail_expired', n) end
  local uid = redis.call('HGET', client_key(id), 'user')
  if uid and uid ~= '' then redis.call('SREM', user_key(uid), id) end
  redis.call('DEL', client_key(id), mail_key(id))
  redis.call('ZREM', AWAY, id)
end
`

const luaState = `
-- state returns the server of a client, '' and its away_until when it is
-- away, or nil when it is unknown or expired (an expired client is
-- forgotten, its mail counted); and, third, whether it acknowledges.
local function state(id, now)
  local f = redis.call('HMGET', client_key(id), 'server', 'away_until', 'acked')
  local srv = f[1]
  if not srv then return nil end
  local acked = f[3] == '1'
  if srv == '' then
    local au = tonumber(f[2])
    if not au or au <= now then
      expire(id)
      return nil
    end
    return '', au, acked
  end
  return srv, nil, acked
end
`

const luaGoAway = `
-- go_away marks the client, held by sid, away from now on; it returns
-- away_until.
local function go_away(id, sid, now, ttl)
  local au = now + ttl
  local ck = client_key(id)
  redis.call('HSET', ck, 'server', '', 'away_until', int(au))
  redis.call('ZADD', AWAY, int(au), id)
  redis.call('PEXPIREAT', ck, int(au + GRACE))
  redis.call('PEXPIREAT', mail_key(id), int(au + GRACE))
  redis.call('SREM', set_key(sid), id)
  return au
end
`

const luaMailBytes = `
-- mail_bytes returns the size of the message in mailbox entry e: the
-- entry's length, less its "<seq> " for a client that acknowledges.
local function mail_bytes(e, acked)
  if acked then
    local sp = string.find(e, ' ', 1, true)
    if sp then return #e - sp end
  end
  return #e
end
`

const luaBoundMail = `
-- bound_mail adds added bytes to the byte total of a client's mailbox
-- (the client hash's mail_bytes) and keeps the newest messages within the
-- bounds, size messages and maxb bytes (the newest is always kept: Go
-- refuses a message over maxb), counting the others as dropped; when the
-- client is away until au, it makes the mailbox expire with the client. n
-- is the mailbox's length, if known.
local function bound_mail(id, size, maxb, acked, au, n, added)
  local mk, ck = mail_key(id), client_key(id)
  n = n or redis.call('LLEN', mk)
  local total = redis.call('HINCRBY', ck, 'mail_bytes', added)
  if n > size or total > maxb then
    local drop = 0
    while drop < n - 1 and (drop < n - size or total > maxb) do
      total = total - mail_bytes(redis.call('LINDEX', mk, drop), acked)
      drop = drop + 1
    end
    if drop > 0 then
      redis.call('LTRIM', mk, drop, -1)
      redis.call('INCRBY', P .. 'stats:mail_dropped', drop)
      redis.call('HSET', ck, 'mail_bytes', int(math.max(total, 0)))
    end
  end
  if au then redis.call('PEXPIREAT', mk, int(au + GRACE)) end
end
`

const luaDeliver = `
-- deliver sends data to client id, held by srv ('' when away until au):
-- to srv's inbox, or to the mailbox when away. The message of a client
-- that acknowledges (acked) is numbered and kept in its mailbox as
-- "<seq> <data>" in any case, and its inbox entry is numbered.
-- Returns 1 (inbox) or 2 (mailbox only).
local function deliver(id, srv, au, acked, data, size, maxb)
  if acked then
    local seq = int(redis.call('HINCRBY', client_key(id), 'seq', 1))
    bound_mail(id, size, maxb, true, au, redis.call('RPUSH', mail_key(id), seq .. ' ' .. data), #data)
    if srv == '' then return 2 end
    redis.call('RPUSH', inbox_key(srv), entry_numbered(srv, id, seq, data))
    return 1
  end
  if srv == '' then
    bound_mail(id, size, maxb, false, au, redis.call('RPUSH', mail_key(id), data), #data)
    return 2
  end
  redis.call('RPUSH', inbox_key(srv), entry_message(srv, id, data))
  return 1
end
`

const luaAckMail = `
-- ack_mail drops the messages numbered up to seq from the mailbox of a
-- client that acknowledges. Its entries are "<seq> <data>" with
-- consecutive numbers (only the oldest are ever removed). seq must not be
-- above the client's last number (see capped_ack), so that the arithmetic
-- stays on small integers. The bytes dropped leave the mailbox's total.
local function ack_mail(id, seq)
  local mk = mail_key(id)
  local head = redis.call('LINDEX', mk, 0)
  if not head then return end
  local n = seq - tonumber(string.match(head, '^%d+')) + 1
  if n <= 0 then return end
  local gone = 0
  for _, e in ipairs(redis.call('LRANGE', mk, 0, int(n - 1))) do gone = gone + mail_bytes(e, true) end
  redis.call('LTRIM', mk, int(n), -1)
  local ck = client_key(id)
  if redis.call('HINCRBY', ck, 'mail_bytes', -gone) < 0 then redis.call('HSET', ck, 'mail_bytes', '0') end
end

-- capped_ack returns ack (a decimal string, up to 2^64-1) as a number no
-- greater than last, the client's last number (a string or nil).
local function capped_ack(ack, last)
  last = tonumber(last) or 0
  if #ack > 15 then return last end
  return math.min(tonumber(ack) or 0, last)
end
`

const luaTakeClient = `
-- take_client makes the client id, known to be live, sid's: it leaves its
-- old server's set, stops being away and joins sid's set.
local function take_client(id, old, sid)
  local ck = client_key(id)
  if old ~= '' and old ~= sid then redis.call('SREM', set_key(old), id) end
  redis.call('HSET', ck, 'server', sid)
  redis.call('HDEL', ck, 'away_until')
  redis.call('ZREM', AWAY, id)
  redis.call('PERSIST', ck)
  redis.call('PERSIST', mail_key(id))
  redis.call('SADD', set_key(sid), id)
end
`

// luaNextClientID: ARGV prefix, a fresh epoch. Returns a client id,
// "<epoch>-<n>": the epoch and the counter n live in one hash, so that
// they are lost together (a Redis restarted without its data, an evicted
// key) and the next id then starts a new epoch, the one given.
const luaNextClientID = `
local key = P .. 'client_seq'
local e = redis.call('HGET', key, 'epoch')
if not e then
  e = ARGV[2]
  redis.call('DEL', key)
  redis.call('HSET', key, 'epoch', e)
end
return e .. '-' .. int(redis.call('HINCRBY', key, 'n', 1))
`

// luaRegister: ARGV prefix, floor. Allocates a server id numbered above
// floor, marked as reading version 1 inbox entries (server_id), and
// records its first heartbeat.
const luaRegister = `
local key = P .. 'server_ids'
local v = redis.call('INCR', key)
local floor = tonumber(ARGV[2])
if v <= floor then
  v = floor + 1
  redis.call('SET', key, int(v))
end
local id = server_id(int(v))
redis.call('ZADD', SERVERS, int(now_ms()), id)
return id
`

// luaHeartbeat: ARGV prefix, server id. Returns 1 when the server was not
// in the servers set any more (it was reaped, or Redis lost its data).
const luaHeartbeat = `
local sid = ARGV[2]
local added = redis.call('ZADD', SERVERS, int(now_ms()), sid)
if added == 1 then raise_counter('server_ids', sid) end
return added
`

// luaConnect: ARGV prefix, client id, server id, session hash, user id
// (may be empty), '1' when the client acknowledges or ”.
const luaConnect = `
local id, sid, uid = ARGV[2], ARGV[3], ARGV[5]
local ck = client_key(id)
local f = redis.call('HMGET', ck, 'server', 'user')
local old, ouid = f[1], f[2]
if old and old ~= '' and old ~= sid then redis.call('SREM', set_key(old), id) end
if ouid and ouid ~= '' and ouid ~= uid then redis.call('SREM', user_key(ouid), id) end
redis.call('DEL', ck, mail_key(id))
redis.call('ZREM', AWAY, id)
redis.call('HSET', ck, 'server', sid, 'session', ARGV[4])
if ARGV[6] == '1' then redis.call('HSET', ck, 'acked', '1', 'seq', '0') end
if uid ~= '' then
  redis.call('HSET', ck, 'user', uid)
  redis.call('SADD', user_key(uid), id)
end
redis.call('SADD', set_key(sid), id)
return 1
`

// luaResume: ARGV prefix, client id, server id, session hash, ack.
// Returns {0} unknown, {1} bad session, {2, old server, mail, user id,
// acked ('1' or ”), last seq}. The mail of a client that acknowledges
// is kept (entries "<seq> <data>" above ack); of one that does not,
// removed. A client taken from another server leaves a replaced entry at
// the end of that server's inbox, if it reads them (entry_replaced).
const luaResume = `
local id, sid = ARGV[2], ARGV[3]
local srv, _, acked = state(id, now_ms())
if not srv then return {0} end
local f = redis.call('HMGET', client_key(id), 'session', 'user', 'seq')
if f[1] ~= ARGV[4] then return {1} end
local ack = capped_ack(ARGV[5], f[3])
take_client(id, srv, sid)
-- from: the server the client is taken from, when it is told and its
-- heartbeat is recent enough (ARGV[6] ms) to count on its hand-back.
local from = ''
if srv ~= '' and srv ~= sid then
  local e = entry_replaced(srv, id)
  if e then
    redis.call('RPUSH', inbox_key(srv), e)
    local hb = tonumber(redis.call('ZSCORE', SERVERS, srv))
    if hb and now_ms() - hb <= tonumber(ARGV[6]) then from = srv end
  end
end
local mk = mail_key(id)
if acked then
  ack_mail(id, ack)
  return {2, srv, redis.call('LRANGE', mk, 0, -1), f[2] or '', '1', f[3] or '0', from}
end
local mail = redis.call('LRANGE', mk, 0, -1)
redis.call('DEL', mk)
redis.call('HDEL', client_key(id), 'mail_bytes')
return {2, srv, mail, f[2] or '', '', '0', from}
`

// luaAck: ARGV prefix, client id, seq. Drops the messages numbered up to
// seq from the mailbox of a client that acknowledges.
const luaAck = `
local id = ARGV[2]
local f = redis.call('HMGET', client_key(id), 'acked', 'seq')
if f[1] == '1' then ack_mail(id, capped_ack(ARGV[3], f[2])) end
return 1
`

// luaDisconnect: ARGV prefix, client id, server id, mailbox TTL (ms).
// Returns 1 when the client went away.
const luaDisconnect = `
local id, sid = ARGV[2], ARGV[3]
if redis.call('HGET', client_key(id), 'server') ~= sid then return 0 end
go_away(id, sid, now_ms(), tonumber(ARGV[4]))
return 1
`

// luaDisconnectWith: ARGV prefix, client id, server id, mailbox TTL (ms),
// mailbox size, mailbox bytes, then the messages unsent, oldest first.
// Returns 1 when the client went away (or was away), 2 when the messages
// went to the server it moved to, 0 when it is unknown.
const luaDisconnectWith = `
local id, sid = ARGV[2], ARGV[3]
local now = now_ms()
local srv, au, acked = state(id, now)
if not srv then return 0 end
local last = #ARGV
if acked then last = 6 end
if srv ~= '' and srv ~= sid then
  local e = entry_returned(srv, id)
  if not e then
    for i = 7, last do redis.call('RPUSH', inbox_key(srv), entry_message(srv, id, ARGV[i])) end
    return 2
  end
  -- The server that holds the client now takes them from the head of its
  -- mailbox when told.
  local added = 0
  for i = last, 7, -1 do
    redis.call('LPUSH', mail_key(id), ARGV[i])
    added = added + #ARGV[i]
  end
  if added > 0 then bound_mail(id, tonumber(ARGV[5]), tonumber(ARGV[6]), false, nil, nil, added) end
  redis.call('RPUSH', inbox_key(srv), e)
  return 2
end
if srv == sid then au = go_away(id, sid, now, tonumber(ARGV[4])) end
if last > 6 then
  local added = 0
  for i = last, 7, -1 do
    redis.call('LPUSH', mail_key(id), ARGV[i])
    added = added + #ARGV[i]
  end
  bound_mail(id, tonumber(ARGV[5]), tonumber(ARGV[6]), false, au, nil, added)
end
return 1
`

// luaForget: ARGV prefix, client id.
const luaForget = `
local id = ARGV[2]
local ck = client_key(id)
local f = redis.call('HMGET', ck, 'server', 'user')
local srv, uid = f[1], f[2]
if srv and srv ~= '' then redis.call('SREM', set_key(srv), id) end
if uid and uid ~= '' then redis.call('SREM', user_key(uid), id) end
redis.call('DEL', ck, mail_key(id))
redis.call('ZREM', AWAY, id)
if srv then return 1 end
return 0
`

// luaLookup: ARGV prefix, client id. Returns {0} unknown or {1, server,
// user id, acked ('1' or ”)}.
const luaLookup = `
local srv, _, acked = state(ARGV[2], now_ms())
if not srv then return {0} end
return {1, srv, redis.call('HGET', client_key(ARGV[2]), 'user') or '', acked and '1' or ''}
`

// luaSend: ARGV prefix, mailbox size, mailbox bytes, then a client id and a message for
// each message of the batch, in order. Each message goes to the inbox of the
// server holding its client, or to the client's mailbox when it is away
// (see deliver). Returns a status per message: 0 unknown client, 1 inbox,
// 2 mailbox.
const luaSend = `
local now = now_ms()
local size, maxb = tonumber(ARGV[2]), tonumber(ARGV[3])
local res = {}
for i = 4, #ARGV, 2 do
  local id = ARGV[i]
  local srv, au, acked = state(id, now)
  if not srv then
    res[#res + 1] = 0
  else
    res[#res + 1] = deliver(id, srv, au, acked, ARGV[i + 1], size, maxb)
  end
end
return res
`

// luaSweep: ARGV prefix, limit. Forgets away clients whose time is up.
// Returns {entries looked at, clients expired}.
const luaSweep = `
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', AWAY, '-inf', int(now), 'LIMIT', 0, tonumber(ARGV[2]))
local n = 0
for _, id in ipairs(ids) do
  local srv = redis.call('HGET', client_key(id), 'server')
  if not srv then
    expire(id)
  elseif srv ~= '' then
    redis.call('ZREM', AWAY, id)
  elseif not state(id, now) then
    n = n + 1
  end
end
return {#ids, n}
`

// luaDeadServers: ARGV prefix, dead after (ms), limit. Returns the ids of
// the servers whose last heartbeat is older than dead after.
const luaDeadServers = `
local before = now_ms() - tonumber(ARGV[2])
return redis.call('ZRANGEBYSCORE', SERVERS, '-inf', '(' .. int(before), 'LIMIT', 0, tonumber(ARGV[3]))
`

// luaCleanup: ARGV prefix, server id, mode ('reap' or 'unregister'), dead
// after (ms), mailbox TTL (ms), mailbox size, mailbox bytes.
//
// Removes a server: every client it holds goes away, the messages left in
// its inbox move to where their clients are now (before the mail of an away
// client: they were sent before it went away; at the end of another server's
// inbox otherwise), except those of clients that acknowledge (their
// mailboxes hold them already), its inbox and set are deleted. In 'reap' mode it does
// nothing unless the server's heartbeat is still older than dead after, and
// only the script that removes the server from the servers set goes on, so
// two reapers never both clean up. Its presence entries are removed and
// their leave messages published on their rooms' channels.
// Returns {done (1 or 0), clients made away, messages moved, presence
// entries removed}.
const luaCleanup = `
local sid = ARGV[2]
local ttl, size, maxb = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = now_ms()
if ARGV[3] == 'reap' then
  local score = redis.call('ZSCORE', SERVERS, sid)
  if not score or tonumber(score) >= now - tonumber(ARGV[4]) then return {0, 0, 0} end
end
if redis.call('ZREM', SERVERS, sid) == 0 and ARGV[3] == 'reap' then return {0, 0, 0} end
local away = 0
for _, id in ipairs(redis.call('SMEMBERS', set_key(sid))) do
  if redis.call('HGET', client_key(id), 'server') == sid then
    go_away(id, sid, now, ttl)
    away = away + 1
  end
end
redis.call('DEL', set_key(sid))
local gone = drop_presence(sid)
local ik = inbox_key(sid)
local entries = redis.call('LRANGE', ik, 0, -1)
redis.call('DEL', ik)
local ids, data, where, until_ = {}, {}, {}, {}
for _, e in ipairs(entries) do
  -- A kick or a replaced entry is for a connection of this dead server:
  -- nothing to do. A numbered message stays in its client's mailbox
  -- until acknowledged.
  local kind, id, _, d = parse_entry(e)
  if kind == 'message' then
    ids[#ids + 1] = id
    data[#data + 1] = d
  end
  if kind == 'message' or kind == 'numbered' then
    if where[id] == nil then
      local srv, au = state(id, now)
      if srv == sid then
        au = go_away(id, sid, now, ttl)
        srv = ''
        away = away + 1
      end
      where[id] = srv or false
      until_[id] = au
    end
  end
end
local moved, touched = 0, {}
for i = #ids, 1, -1 do
  local id = ids[i]
  if where[id] == '' then
    redis.call('LPUSH', mail_key(id), data[i])
    touched[id] = (touched[id] or 0) + #data[i]
    moved = moved + 1
  end
end
for id, added in pairs(touched) do bound_mail(id, size, maxb, false, until_[id], nil, added) end
for i = 1, #ids do
  local srv = where[ids[i]]
  if srv and srv ~= '' then
    redis.call('RPUSH', inbox_key(srv), entry_message(srv, ids[i], data[i]))
    moved = moved + 1
  end
end
return {1, away, moved, gone}
`

// luaReclaim: ARGV prefix, client id, server id, session hash, user id
// (may be empty), '1' when the client acknowledges or ”, the number of
// the last message the server delivered to it.
//
// Run by a server that finds it was reaped while alive, for each client it
// holds: an away client becomes the server's again and its mail moves to
// the server's inbox, in order (the mail of a client that acknowledges is
// copied there, numbered, and stays kept); a missing (or expired) client
// is recreated, numbering on from the last message delivered; a client
// held by another server, or under another session, is left.
// Returns {status, messages moved}: status 0 left, 1 recreated, 2 taken
// back from away, 3 still the server's.
const luaReclaim = `
local id, sid, hash, uid = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ck = client_key(id)
local srv, _, acked = state(id, now_ms())
if not srv then
  redis.call('DEL', ck, mail_key(id))
  redis.call('ZREM', AWAY, id)
  redis.call('HSET', ck, 'server', sid, 'session', hash)
  if ARGV[6] == '1' then redis.call('HSET', ck, 'acked', '1', 'seq', ARGV[7]) end
  if uid ~= '' then
    redis.call('HSET', ck, 'user', uid)
    redis.call('SADD', user_key(uid), id)
  end
  redis.call('SADD', set_key(sid), id)
  return {1, 0}
end
if redis.call('HGET', ck, 'session') ~= hash then return {0, 0} end
if srv == sid then
  redis.call('SADD', set_key(sid), id)
  return {3, 0}
end
if srv ~= '' then return {0, 0} end
take_client(id, srv, sid)
local mk = mail_key(id)
local mail = redis.call('LRANGE', mk, 0, -1)
local ik = inbox_key(sid)
-- The mail of a client that acknowledges, "<seq> <data>", goes numbered
-- and stays kept.
for _, m in ipairs(mail) do
  local e
  if acked then
    local sp = string.find(m, ' ', 1, true)
    e = entry_numbered(sid, id, string.sub(m, 1, sp - 1), string.sub(m, sp + 1))
  else
    e = entry_message(sid, id, m)
  end
  redis.call('RPUSH', ik, e)
end
if not acked then
  redis.call('DEL', mk)
  redis.call('HDEL', ck, 'mail_bytes')
end
return {2, #mail}
`

// scripts are the Broker's Lua scripts.
type scripts struct {
	nextClientID, register, heartbeat                                *rueidis.Lua
	connect, resume, ack, disconnect, disconnectWith, forget, lookup *rueidis.Lua
	send                                                             *rueidis.Lua
	sweep, deadServers, cleanup, reclaim                             *rueidis.Lua
	presenceAdd, presenceRemove                                      *rueidis.Lua
	userClients, sendUser, forgetUser                                *rueidis.Lua
}

// newScripts returns the scripts and their sources, to be loaded by New.
func newScripts() (*scripts, []string) {
	var srcs []string
	mk := func(body string, helpers ...string) *rueidis.Lua {
		src := luaBase + strings.Join(helpers, "") + body
		srcs = append(srcs, src)
		return rueidis.NewLuaScript(src)
	}
	s := &scripts{
		nextClientID:   mk(luaNextClientID, luaInt),
		register:       mk(luaRegister, luaNow, luaInt, luaEntry),
		heartbeat:      mk(luaHeartbeat, luaNow, luaInt, luaRaiseCounter),
		connect:        mk(luaConnect, luaKeys),
		resume:         mk(luaResume, luaNow, luaInt, luaKeys, luaExpire, luaState, luaTakeClient, luaMailBytes, luaAckMail, luaEntry),
		ack:            mk(luaAck, luaInt, luaKeys, luaMailBytes, luaAckMail),
		disconnect:     mk(luaDisconnect, luaNow, luaInt, luaKeys, luaGoAway),
		disconnectWith: mk(luaDisconnectWith, luaNow, luaInt, luaKeys, luaExpire, luaState, luaGoAway, luaMailBytes, luaBoundMail, luaEntry),
		forget:         mk(luaForget, luaKeys),
		lookup:         mk(luaLookup, luaNow, luaKeys, luaExpire, luaState),
		send:           mk(luaSend, luaNow, luaInt, luaKeys, luaExpire, luaState, luaMailBytes, luaBoundMail, luaEntry, luaDeliver),
		sweep:          mk(luaSweep, luaNow, luaInt, luaKeys, luaExpire, luaState),
		deadServers:    mk(luaDeadServers, luaNow, luaInt),
		cleanup:        mk(luaCleanup, luaNow, luaInt, luaKeys, luaExpire, luaState, luaGoAway, luaMailBytes, luaBoundMail, luaPresence, luaDropPresence, luaEntry),
		reclaim:        mk(luaReclaim, luaNow, luaKeys, luaExpire, luaState, luaTakeClient, luaEntry),
	}
	// Presence (presence.go).
	s.presenceAdd = mk(luaPresenceAdd, luaPresence)
	s.presenceRemove = mk(luaPresenceRemove, luaPresence)
	// Users (users.go).
	userHelpers := []string{luaNow, luaInt, luaKeys, luaExpire, luaState, luaUserClients}
	s.userClients = mk(luaUserClientsList, userHelpers...)
	s.sendUser = mk(luaSendUser, append(userHelpers, luaMailBytes, luaBoundMail, luaEntry, luaDeliver)...)
	s.forgetUser = mk(luaForgetUser, append(userHelpers, luaEntry)...)
	return s, srcs
}
