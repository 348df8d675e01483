// Package redis implements broker.Broker on a standalone Redis server
// (6.2 or newer), shared by the Rocket nodes (processes) of a cluster.
//
// Each node creates one Broker with New; the servers it registers get
// cluster-unique ids, and every node sees the same directory of clients,
// mailboxes and rooms. Every change that touches several keys is one Lua
// script, so concurrent nodes never see it half done; scripts read the time
// from the Redis server (TIME), so nodes with skewed clocks agree on
// heartbeats and expiry.
//
// # Delivery
//
// Send appends a message entry (see Inbox entries) to the inbox (a list) of
// the server that holds the client, as recorded in the client's hash, or
// appends data to the client's mailbox when it is away. Each registered server has a consumer
// goroutine that pops its inbox (up to Config.InboxBatch messages per round
// trip, blocking for at most a second when it is empty) and calls
// Handler.Deliver for each message in order, so messages sent by one
// goroutine to one client arrive in order.
//
// Rooms use Redis pub/sub: Publish publishes "<from server id> <data>" on the
// room's channel, and every Broker with local servers subscribed to the room
// delivers data to them (but not to from), in the order received. A Broker
// has one pub/sub connection; it subscribes a room's channel when its first
// local server subscribes and unsubscribes it when the last one leaves.
// Handlers are called from the Broker's goroutines (one consumer per server,
// one room dispatcher), never while it holds a lock; they may call the
// Broker back, except Close and their own server's UnregisterServer, which
// wait for them.
//
// # Liveness
//
// Each registered server refreshes its heartbeat every
// Config.HeartbeatInterval. Each Broker runs a reaper that, at the same
// interval (with jitter), cleans up the servers whose heartbeat is older
// than Config.DeadAfter: their clients go away (resumable, with their mail,
// for Config.MailboxTTL), the messages left in their inbox move to where
// their clients are now (the front of the mailbox of an away client, in
// order), and their keys are deleted. The cleanup script checks the
// heartbeat again and removes the server from the servers set first, so two
// reapers never both clean up. A reaper that recovers from an outage of
// Redis waits DeadAfter before cleaning up again, so that the servers that
// lived through the outage refresh their heartbeats first.
//
// Close does not unregister the servers: to the cluster a closed Broker
// looks like a crashed node, which the others clean up; Rocket servers call
// UnregisterServer when they shut down gracefully.
//
// A server that was cleaned up while it was alive but cut off from Redis
// notices it at its next heartbeat (the servers set did not hold it any
// more) and reclaims the clients it holds: an away client becomes its own
// again, with its mail moved to its inbox in order; a client that is gone is
// recorded again; a client that another server holds now is left there.
//
// # Presence
//
// PresenceAdd records an entry in the room's hash, keyed by client id,
// with the id of the server that holds the client, and indexes it in that
// server's presence set. PresenceRemove removes it only if it is still
// that server's; Presence reads the hash. The cleanup script that removes
// a server (UnregisterServer, or a reaper for a dead server) also removes
// its presence entries and publishes their leave messages on their rooms'
// channels, from no server, in the same script: the entries of a node
// that dies disappear, and the other nodes' members are told, at most
// DeadAfter plus one reaper round (HeartbeatInterval, give or take a
// quarter) after its last heartbeat (about 6.3 s with the defaults),
// provided some Broker of the prefix is running its reaper. A server
// cleaned up while only cut off from Redis loses its entries (their leave
// messages are published); reclaim does not restore them.
//
// # Users
//
// Connect records the client's user id in its hash and adds the client to
// the user's set; Forget, expiry, ForgetUser and a Connect under another
// user take it out, and the scripts that read a set drop the ids that are
// no longer live in passing. UserClients, SendUser and ForgetUser are one
// script each. SendUser appends the message to the inbox of each client's
// server (but from's) or to the mailbox of each away client. ForgetUser
// deletes the clients' hashes and mailboxes and appends a kick entry to
// the inbox of each connected client's server, after what was there; its
// consumer calls the Handler's Kick (broker.Kicker) for it. Nothing of a
// user belongs to a server: the cleanup of a dead or unregistering server
// makes its clients away (they stay in their users' sets) and drops the
// kicks left in its inbox. A reclaimed client that had to be recreated
// gets its user back.
//
// Each Broker also runs a sweeper that forgets away clients whose
// MailboxTTL has passed, counting their mail in MailExpired; Send, Resume
// and Lookup treat such a client as unknown even before the sweeper runs.
//
// # Failures
//
// Calls fail fast with an error wrapping the cause when Redis is
// unreachable; they are bounded by their context, except that a call whose
// context ends while its command is under way waits up to 100 ms more for
// the answer, so that a change Redis has made is reported as made. The
// first use of a pooled connection that a Redis restart broke fails once
// (writes are not retried: Redis may have carried them out).
//
// The Broker's goroutines log the first failure of an outage and the
// recovery (one line each), retry with exponential backoff from 50 ms to
// 2 s, and recover by themselves when Redis comes back: the consumers pop
// again and the subscriber reconnects and subscribes every wanted channel
// again. Subscribe does not fail while Redis is down: it records the wish,
// which the subscriber carries out when Redis is back (room messages
// published meanwhile are not delivered).
//
// Messages already popped from an inbox are delivered even while their
// server unregisters or its Broker closes. The pops (LPOP with a count,
// BLPOP bounded by Redis's own timeout) have no client-side timeout and go
// through connections of their own without read deadlines, so that a node
// paused for any time (SIGSTOP, a stalled VM) still reads the answer Redis
// gave it when it continues; a dead connection is found by TCP keep-alive.
// A message whose pop answer is lost on the network (a connection broken
// mid-reply) is lost, for clients that do not acknowledge. Messages
// that were in an inbox when their client moved away are delivered to the
// old server's Handler, which sends them on (see the broker package's
// contract for servers).
//
// # Acknowledged delivery
//
// For a client connected with broker.Client.Acked, the client key holds
// acked=1 and seq, the number of the last message sent to it. The send
// script numbers each message (HINCRBY) and appends it, as "<seq> <data>",
// to the client's mail list whether the client is connected or away (so the
// list, bounded by MailboxSize like any mailbox, is the log of what the
// client has not acknowledged), and, when connected, appends a numbered
// entry to its server's inbox, whose consumer passes the number to
// Deliver. Ack and Resume trim the list from the front up to
// the number given (the numbers in it are consecutive). The cleanup of a
// dead or unregistered server leaves the numbered entries of its inbox
// where they are (deleted with the inbox): the mail lists hold them, and
// the client gets them when it resumes. Reclaim copies the list of a client
// it takes back into the server's inbox, numbered (the server drops what
// it delivered already), and recreates a lost client numbering on from the
// last number its consumer delivered. So whether a server dies before,
// while or after popping a message, the message stays in the list until
// the client acknowledges it.
//
// # Inbox entries
//
// An inbox holds entries of four kinds: messages for the server's
// clients, numbered messages for those that acknowledge, kicks
// (ForgetUser) and replaced entries (Resume, see Resuming elsewhere).
// They are written in one place in Lua (luaEntry) and read in one place
// in Go (entry.go). Since version 1 each entry starts with '#', the
// version and the letter of its kind; client ids hold no space and no
// '#', and the data, last, runs to the end of the entry:
//
//	kind      version 1                        version 0
//	message   "#1m <client id> <data>"         "<client id> <data>"
//	numbered  "#1n <client id> <seq> <data>"   "<client id>#<seq> <data>"
//	kick      "#1k <client id> <reason>"       " <client id> <reason>"
//	replaced  "#1r <client id>"                (none)
//	returned  "#1e <client id>"                (none)
//
// Nodes of the releases before version 1 read version 0 only. So that
// both share a cluster during a rolling restart, a server's id tells the
// version it reads: this release's servers have ids ending in "v1"
// ("17v1"), older ones plain decimal ids ("17"), and every script that
// writes into an inbox writes the version of its server (a test of the
// id's last two characters, no extra key read). An old node thus finds
// in its inbox only the forms it knows, and no replaced entry: it keeps
// the behaviour of its release. This release's consumers read both
// versions, since old nodes write version 0 into every inbox; that
// reading can go once no node of a release before version 1 can share a
// cluster (see docs/deployment.md), while the mark stays for good: the
// scripts of this release go by it.
//
// One reader escapes the rule: the cleanup of a dead server reads the
// entries left in its inbox. A node of before that cleans up a dead server
// of this release takes its version 1 entries for numbered messages and
// leaves them: the messages for clients that acknowledge are in their
// mailboxes anyway, but those for clients that do not are dropped rather
// than moved to where their clients are. Servers that unregister clean up
// with their own scripts.
//
// # Resuming elsewhere
//
// When Resume takes a client that the directory placed on another server,
// the resume script appends a replaced entry to that server's inbox, in the
// same script as the move: after the messages already there for the
// client, before any sent to it afterwards (which go to the new server).
// The old server's consumer calls its Handler's Replaced
// (broker.Replacer) for it. Servers of nodes of before get no replaced
// entry (see Inbox entries): their connection stays open until it closes
// by itself. The cleanup of a dead server drops the replaced entries left
// in its inbox, like its kicks.
//
// # Keys
//
// With P the Config.Prefix ("rocket:" by default), a Broker uses:
//
//	P server_ids               string  INCR counter of server ids (decimal; a server's id is
//	                                   its number and "v1", see Inbox entries)
//	P client_seq               hash    epoch (8 random characters) and n (HINCRBY counter) of
//	                                   the client ids, "<epoch>-<n>"
//	P servers                  zset    server id -> last heartbeat, unix ms (Redis clock)
//	P server:<id>:clients      set     ids of the clients the server holds
//	P inbox:<id>               list    the server's inbox: messages, numbered messages for
//	                                   clients that acknowledge, kicks (see Users) and replaced
//	                                   entries, in the version its server reads (see Inbox
//	                                   entries)
//	P wake:<id>                list    wake-ups of the server's consumer at shutdown (expire after a minute)
//	P client:<id>              hash    server (empty when away), session (hex SHA-256 of the
//	                                   secret: the secret itself is never stored), user (the
//	                                   user id, only if not empty), away_until
//	                                   (unix ms, only while away), acked and seq (clients that
//	                                   acknowledge), mail_bytes (the bytes of the messages in
//	                                   the mailbox); while away the key expires at away_until
//	                                   plus a minute, as a safety net
//	P mail:<id>                list    mailbox of an away client, oldest first, at most
//	                                   MailboxSize messages and MailboxBytes bytes of data (the
//	                                   oldest dropped first); expires with the client key. For a
//	                                   client that acknowledges, its unacknowledged messages,
//	                                   connected or not, as "<seq> <data>"
//	P away                     zset    away client id -> away_until
//	P stats:mail_dropped       string  messages dropped from full mailboxes
//	P stats:mail_expired       string  messages dropped with expired clients
//	P room:<name>              channel pub/sub channel of a room: "<from server id> <data>"
//	                                   (from is empty for leave messages published by a cleanup)
//	P presence:<room>          hash    presence entries of a room: client id -> "<server id>
//	                                   <joined at, unix ms> <length of data> <data><leave message>"
//	P server:<id>:presence     set     the server's presence entries: "<client id> <room>"
//	P user:<user id>:clients   set     ids of the user's clients, connected or away
//
// Stats returns the two counters, which are shared by every Broker of the
// prefix (cluster-wide, since the prefix was first used), not counted per
// Broker.
//
// # Ids and persistence
//
// Server ids are the numbers of the server_ids counter, marked "v1"
// (see Inbox entries); client ids are
// "<epoch>-<n>", from the client_seq hash: n counts, and the epoch is 8
// random characters drawn when the hash is created. Production Redis should
// run with appendonly yes, but a Redis that restarts without its data (or
// evicts the hash) never makes Rocket reuse a client id, which an
// application may have stored (to whisper to, say): the next id starts a
// new epoch. For server ids, as a safety net the id script takes the
// highest server id the Broker has issued or seen and never returns one at
// or below it, and the heartbeat of a server that finds itself missing
// raises the counter above its id.
//
// Redis Cluster is not supported: the scripts touch the keys of many
// clients and servers at once. The URL may name a TLS server (rediss://),
// a user and password, and a database.
package redis
