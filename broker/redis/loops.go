package redis

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/rocket-go/rocket/broker"
)

// This file holds the Broker's goroutines: per registered server an inbox
// consumer and a heartbeat; per Broker the reaper, the sweeper, the pub/sub
// subscriber and the room dispatcher. None of them spins: they block on
// Redis, on a ticker, or on a backoff when Redis fails.

// backoff is an exponential delay between retries, from minBackoff to
// maxBackoff.
type backoff struct{ d time.Duration }

func (bo *backoff) reset() { bo.d = 0 }

// sleep waits for the next delay or until stop is closed; it reports
// whether the delay passed.
func (bo *backoff) sleep(stop <-chan struct{}) bool {
	if bo.d == 0 {
		bo.d = minBackoff
	} else {
		bo.d = min(2*bo.d, maxBackoff)
	}
	return sleep(stop, bo.d)
}

// sleep waits for d or until stop is closed; it reports whether d passed.
func sleep(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// jitter returns d give or take a quarter.
func jitter(d time.Duration) time.Duration {
	return d*3/4 + rand.N(d/2+1)
}

// outage logs the first failure of a series and the recovery that ends it,
// so that an outage of Redis produces two lines per goroutine, not one per
// retry. Failures soon after a recovery (pooled connections that the outage
// broke fail once more when first used) continue the outage already
// reported: they are logged at debug level only.
//
// An OOM error (Redis at maxmemory) is counted in Stats.OutOfMemory and
// logged as such: "Redis is out of memory".
type outage struct {
	b         *Broker
	log       *slog.Logger
	what      string
	attrs     []any
	down      bool
	quiet     bool // the failures continue an outage already reported
	since     time.Time
	recovered time.Time
	failures  int
}

// outageSettle is how long after a recovery a failure continues the outage.
const outageSettle = 5 * time.Second

func (o *outage) fail(err error) {
	o.failures++
	oom := o.b != nil && o.b.noteOOM(err)
	if o.down {
		return
	}
	o.down = true
	if !o.recovered.IsZero() && time.Since(o.recovered) < outageSettle {
		o.quiet = true
		o.log.Debug("redis broker: "+o.what+" failed again after recovering; retrying with backoff", append(o.attrs, "err", err)...)
		return
	}
	o.since = time.Now()
	if oom {
		o.log.Error("redis broker: Redis is out of memory (maxmemory reached): "+o.what+" failed; retrying with backoff", append(o.attrs, "err", err)...)
		return
	}
	o.log.Warn("redis broker: "+o.what+" failed; retrying with backoff", append(o.attrs, "err", err)...)
}

func (o *outage) ok() {
	if !o.down {
		return
	}
	if o.quiet {
		o.log.Debug("redis broker: "+o.what+" recovered again", append(o.attrs, "failures", o.failures)...)
	} else {
		o.log.Info("redis broker: "+o.what+" recovered",
			append(o.attrs, "after", time.Since(o.since).Round(time.Millisecond), "failures", o.failures)...)
	}
	o.down, o.quiet = false, false
	o.recovered = time.Now()
	o.failures = 0
}

// consume reads the server's inbox and calls its Handler with each entry,
// in order (Deliver for messages, Kick and Replaced for the others), until
// the server stops. It pops up to InboxBatch entries per round trip (LPOP
// with a count) and, when the inbox is empty, blocks on BLPOP of the inbox
// and of the server's wake-up key for at most blockTimeout.
//
// Its commands are never canceled by UnregisterServer or Close (they push a
// wake-up instead): a pop canceled while Redis answers would lose the
// messages popped. Messages popped are delivered even when the server is
// stopping.
func (b *Broker) consume(s *server) {
	inbox, wake := b.inboxPrefix+s.id, b.wakePrefix+s.id
	var bo backoff
	out := outage{b: b, log: b.log, what: "inbox consumer", attrs: []any{"server", s.id}}
	for {
		select {
		case <-s.stop:
			return
		default:
		}
		entries, err := b.pop(inbox, wake)
		if err != nil {
			b.consumerRetries.Add(1)
			out.fail(err)
			if !bo.sleep(s.stop) {
				return
			}
			continue
		}
		out.ok()
		bo.reset()
		var last map[string]uint64 // per acknowledging client, its last number
		for _, raw := range entries {
			e, ok := decodeEntry(raw)
			switch {
			case !ok:
				b.log.Warn("redis broker: malformed inbox entry dropped", "server", s.id, "bytes", len(raw))
			case e.kind == entryKick: // from ForgetUser (users.go)
				b.kick(s, e.id, e.data)
			case e.kind == entryReplaced: // from Resume on another server
				// s.clients keeps the client: it may have resumed on s
				// again since, and the Disconnect of the connection that
				// s closes drops it.
				if r, ok := s.h.(broker.Replacer); ok {
					r.Replaced(e.id)
				}
			case e.kind == entryReturned: // from DisconnectWith on the server it was taken from
				if r, ok := s.h.(broker.Returner); ok {
					r.Returned(e.id)
				}
			case e.kind == entryNumbered:
				if last == nil {
					last = make(map[string]uint64)
				}
				last[e.id] = e.seq
				s.h.Deliver(e.id, e.seq, []byte(e.data))
			default:
				s.h.Deliver(e.id, 0, []byte(e.data))
			}
		}
		if last != nil {
			b.delivered(s, last)
		}
	}
}

// delivered records the number of the last message delivered to each
// acknowledging client of s, for reclaim.
func (b *Broker) delivered(s *server, last map[string]uint64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, seq := range last {
		if h, ok := s.clients[id]; ok && h.seq < seq {
			h.seq = seq
			s.clients[id] = h
		}
	}
}

// pop returns the next messages of inbox: up to InboxBatch of them or, if
// there are none, the first one to come within blockTimeout. It returns no
// message and no error on a timeout or a wake-up.
//
// Neither pop has a client-side timeout (they go through b.pdb, whose
// connections have no deadline, with a context that never ends): once
// Redis has popped entries, its answer is the only copy of them, and a
// node paused (SIGSTOP, a stalled VM) past a timeout would otherwise give
// up on it and lose them. The BLPOP is bounded by Redis's own timeout; a
// dead connection is found by TCP keep-alive, and Close closes b.pdb if
// the pops do not return.
func (b *Broker) pop(inbox, wake string) ([]string, error) {
	ctx := context.Background()
	entries, err := b.pdb.Do(ctx, b.pdb.B().Lpop().Key(inbox).Count(int64(b.cfg.InboxBatch)).Build()).AsStrSlice()
	if err == nil && len(entries) > 0 || err != nil && !rueidis.IsRedisNil(err) {
		return entries, err
	}
	kv, err := b.pdb.Do(ctx, b.pdb.B().Blpop().Key(inbox, wake).Timeout(blockTimeout.Seconds()).Build()).AsStrSlice()
	switch {
	case rueidis.IsRedisNil(err):
		return nil, nil
	case err != nil:
		return nil, err
	case len(kv) == 2 && kv[0] == inbox:
		return kv[1:], nil
	}
	return nil, nil // a wake-up
}

// heartbeat refreshes the server's score in the servers set every
// HeartbeatInterval, with Redis's clock. When the refresh finds the server
// missing from the set, the server was reaped while alive (cut off from
// Redis longer than DeadAfter) or Redis lost its data: it reclaims its
// clients, then tells the Handler if it is a broker.Reclaimer.
func (b *Broker) heartbeat(s *server) {
	t := time.NewTicker(b.cfg.HeartbeatInterval)
	defer t.Stop()
	out := outage{b: b, log: b.log, what: "heartbeat", attrs: []any{"server", s.id}}
	reclaim := false
	failing := false // counted in b.beatFailing
	defer func() {
		if failing {
			b.beatFailing.Add(-1)
		}
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if b.heartbeatPaused.Load() {
			continue
		}
		ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
		added, err := b.exec(ctx, b.lua.heartbeat, b.cfg.Prefix, s.id).AsInt64()
		switch {
		case err == nil:
			b.lastBeat.Store(time.Now().UnixNano())
			if failing {
				// The others' heartbeats failed too, most likely (a full
				// or unreachable Redis): give them DeadAfter to catch up.
				b.reapHold.Store(time.Now().Add(b.cfg.DeadAfter).UnixNano())
				b.beatFailing.Add(-1)
				failing = false
			}
		case !failing && b.ctx.Err() == nil:
			b.beatFailing.Add(1)
			failing = true
		}
		if err == nil {
			out.ok()
			if added == 1 {
				b.log.Warn("redis broker: server was missing from the servers set (reaped while cut off, or Redis lost its data); reclaiming its clients", "server", s.id)
				reclaim = true
			}
			if reclaim {
				err = b.reclaim(ctx, s)
				reclaim = err != nil
				if r, ok := s.h.(broker.Reclaimer); ok && !reclaim {
					r.Reclaimed()
				}
			}
		}
		cancel()
		if err != nil && b.ctx.Err() == nil {
			out.fail(err)
		}
	}
}

// reclaim runs the reclaim script for each client the server holds.
func (b *Broker) reclaim(ctx context.Context, s *server) error {
	b.mu.Lock()
	execs := make([]rueidis.LuaExec, 0, len(s.clients))
	for id, h := range s.clients {
		execs = append(execs, rueidis.LuaExec{Args: []string{b.cfg.Prefix, id, s.id, h.hash, h.user, flag(h.acked), strconv.FormatUint(h.seq, 10)}})
	}
	b.mu.Unlock()
	var status [4]int
	moved := 0
	for len(execs) > 0 {
		n := min(len(execs), reclaimBatch)
		for _, r := range b.lua.reclaim.ExecMulti(ctx, b.rdb, execs[:n]...) {
			res, err := r.AsIntSlice()
			if err != nil {
				return err
			}
			status[res[0]]++
			moved += int(res[1])
		}
		execs = execs[n:]
	}
	b.log.Warn("redis broker: clients reclaimed", "server", s.id,
		"taken_back", status[2], "recreated", status[1], "kept", status[3],
		"held_elsewhere", status[0], "messages_moved", moved)
	return nil
}

// reaper cleans up, every HeartbeatInterval give or take a quarter, the
// servers of other Brokers whose heartbeat is older than DeadAfter.
//
// After an outage of Redis every heartbeat is old: a reaper that recovers
// from one waits DeadAfter before cleaning up again, so that the servers
// that lived through the outage refresh their heartbeats first.
func (b *Broker) reaper() {
	out := outage{b: b, log: b.log, what: "reaper"}
	var holdUntil time.Time
	held := false // reaping is held for this Broker's own heartbeats
	for sleep(b.stop, jitter(b.cfg.HeartbeatInterval)) {
		may := b.mayReap()
		switch {
		case !may && !held:
			held = true
			b.log.Warn("redis broker: not cleaning up other servers while this node's own heartbeat is failing or late")
		case may && held:
			held = false
			b.log.Info("redis broker: heartbeats written again; cleaning up dead servers again")
		}
		ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
		err := b.reap(ctx, may && time.Now().After(holdUntil) && !out.down)
		cancel()
		switch {
		case err != nil:
			if b.ctx.Err() == nil {
				out.fail(err)
			}
		case out.down:
			holdUntil = time.Now().Add(b.cfg.DeadAfter)
			out.ok()
		}
	}
}

// mayReap reports whether the reaper may clean up other servers: only
// when this Broker's own heartbeats are written, so that a Redis that
// refuses writes (at maxmemory, say) or a node paused or cut off never
// makes a node declare the others dead for its own trouble. That is: no
// heartbeat of its servers is failing, the last one was written less than
// DeadAfter/2 ago, and DeadAfter has passed since heartbeats recovered
// from a failure. A Broker without servers has no heartbeat to go by and
// may reap.
func (b *Broker) mayReap() bool {
	if b.beatFailing.Load() > 0 {
		return false
	}
	now := time.Now().UnixNano()
	if now < b.reapHold.Load() {
		return false
	}
	b.mu.Lock()
	n := len(b.servers)
	b.mu.Unlock()
	return n == 0 || now-b.lastBeat.Load() < int64(b.cfg.DeadAfter/2)
}

// reap runs one round of the reaper: it finds the dead servers and, if
// cleanup is set, cleans them up.
func (b *Broker) reap(ctx context.Context, cleanup bool) error {
	ids, err := b.exec(ctx, b.lua.deadServers, b.cfg.Prefix, b.deadAfterArg, strconv.Itoa(reapLimit)).AsStrSlice()
	if err != nil || !cleanup {
		return err
	}
	for _, id := range ids {
		if b.local(id) != nil {
			continue // alive: its heartbeat will catch up
		}
		res, err := b.exec(ctx, b.lua.cleanup, b.cfg.Prefix, id, "reap", b.deadAfterArg,
			b.ttlArg, b.sizeArg, b.bytesArg).AsIntSlice()
		if err != nil {
			return err
		}
		if res[0] == 1 {
			b.log.Info("redis broker: dead server cleaned up", "server", id,
				"clients_away", res[1], "messages_moved", res[2], "presence_removed", res[3])
		}
	}
	return nil
}

// sweeper forgets, every sweep interval, the away clients whose MailboxTTL
// has passed, counting their mail as expired.
func (b *Broker) sweeper() {
	out := outage{b: b, log: b.log, what: "sweeper"}
	t := time.NewTicker(b.cfg.sweepInterval())
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
		err := b.sweep(ctx)
		cancel()
		if err != nil {
			if b.ctx.Err() == nil {
				out.fail(err)
			}
		} else {
			out.ok()
		}
	}
}

// sweep runs the sweep script until it finds less than a full batch, at
// most sweepRounds times.
func (b *Broker) sweep(ctx context.Context) error {
	for range sweepRounds {
		res, err := b.exec(ctx, b.lua.sweep, b.cfg.Prefix, strconv.Itoa(sweepLimit)).AsIntSlice()
		if err != nil {
			return err
		}
		if res[0] < sweepLimit {
			return nil
		}
	}
	return nil
}

// kickSubscriber asks the subscriber to bring the channel subscriptions in
// line with the rooms wanted.
func (b *Broker) kickSubscriber() {
	select {
	case b.subKick <- struct{}{}:
	default:
	}
}

// setSub updates the pub/sub state and wakes the Subscribe calls waiting
// for it. b.mu must be held.
func (b *Broker) setSubLocked(synced uint64, down bool) {
	b.subSynced = max(b.subSynced, synced)
	b.subDown = down
	close(b.subChanged)
	b.subChanged = make(chan struct{})
}

// subscriber owns the Broker's pub/sub connection: it opens it, subscribes
// the channels of the rooms wanted by local servers and keeps them in line
// with Subscribe and Unsubscribe. When the connection breaks it reconnects
// with backoff and subscribes every wanted channel again.
func (b *Broker) subscriber() {
	var bo backoff
	out := outage{b: b, log: b.log, what: "pub/sub connection"}
	for {
		err := b.subscribeSession(&bo, &out)
		select {
		case <-b.stop:
			return
		default:
		}
		b.mu.Lock()
		b.setSubLocked(0, true)
		b.mu.Unlock()
		b.subscriberRetries.Add(1)
		out.fail(err)
		if !bo.sleep(b.stop) {
			return
		}
	}
}

// subscribeSession runs one pub/sub connection until it breaks (returning
// why) or the Broker closes.
func (b *Broker) subscribeSession(bo *backoff, out *outage) error {
	dc, _ := b.rdb.Dedicate()
	defer dc.Close()
	broken := dc.SetPubSubHooks(rueidis.PubSubHooks{OnMessage: b.onRoomMessage})
	ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
	err := dc.Do(ctx, dc.B().Ping().Build()).Error()
	cancel()
	if err != nil {
		return err
	}
	subscribed := make(map[string]bool)
	for {
		if err := b.syncRooms(dc, subscribed); err != nil {
			return err
		}
		out.ok()
		bo.reset()
		select {
		case <-b.stop:
			return nil
		case err := <-broken:
			if err == nil {
				err = errors.New("pub/sub connection closed")
			}
			return err
		case <-b.subKick:
		}
	}
}

// syncRooms subscribes the channels of the rooms wanted and not subscribed
// on the connection, and unsubscribes those subscribed and no longer
// wanted.
func (b *Broker) syncRooms(dc rueidis.DedicatedClient, subscribed map[string]bool) error {
	b.mu.Lock()
	gen := b.subGen
	var add, del []string
	for name := range b.rooms {
		if !subscribed[name] {
			add = append(add, name)
		}
	}
	for name := range subscribed {
		if b.rooms[name] == nil {
			del = append(del, name)
		}
	}
	b.mu.Unlock()
	ctx, cancel := context.WithTimeout(b.ctx, opTimeout)
	defer cancel()
	for len(add) > 0 {
		n := min(len(add), subBatch)
		if err := dc.Do(ctx, dc.B().Subscribe().Channel(b.channels(add[:n])...).Build()).Error(); err != nil {
			return err
		}
		for _, name := range add[:n] {
			subscribed[name] = true
		}
		add = add[n:]
	}
	for len(del) > 0 {
		n := min(len(del), subBatch)
		if err := dc.Do(ctx, dc.B().Unsubscribe().Channel(b.channels(del[:n])...).Build()).Error(); err != nil {
			return err
		}
		for _, name := range del[:n] {
			delete(subscribed, name)
		}
		del = del[n:]
	}
	b.mu.Lock()
	b.setSubLocked(gen, false)
	b.mu.Unlock()
	return nil
}

func (b *Broker) channels(rooms []string) []string {
	chs := make([]string, len(rooms))
	for i, name := range rooms {
		chs[i] = b.roomPrefix + name
	}
	return chs
}

// onRoomMessage is called by rueidis's reader of the pub/sub connection. It
// hands the message to the dispatcher, so that slow handlers, or handlers
// calling the Broker, never hold up that reader.
func (b *Broker) onRoomMessage(m rueidis.PubSubMessage) {
	select {
	case b.roomMsgs <- m:
	case <-b.stop:
	}
}

// dispatchRooms delivers room messages to the local servers subscribed,
// one message at a time, in the order received.
func (b *Broker) dispatchRooms() {
	for {
		select {
		case <-b.stop:
			return
		case m := <-b.roomMsgs:
			b.deliverRoom(m)
		}
	}
}

func (b *Broker) deliverRoom(m rueidis.PubSubMessage) {
	name, ok := strings.CutPrefix(m.Channel, b.roomPrefix)
	if !ok {
		return
	}
	from, data, ok := strings.Cut(m.Message, " ")
	if !ok {
		return
	}
	b.mu.Lock()
	var list []*server
	if r := b.rooms[name]; r != nil {
		list = r.list
	}
	b.mu.Unlock()
	var buf []byte
	for _, s := range list {
		if s.id == from {
			continue
		}
		if buf == nil {
			buf = []byte(data)
		}
		s.h.DeliverRoom(name, buf)
	}
}
