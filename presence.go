package rocket

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// Names of the default presence messages (see Presence).
const (
	// PresenceJoinEvent names the default message published to a room
	// when a client becomes present in it: {"Presence.join": PresenceEvent}.
	PresenceJoinEvent = "Presence.join"
	// PresenceLeaveEvent names the default message published to a room
	// when a client stops being present in it: {"Presence.leave":
	// PresenceEvent}.
	PresenceLeaveEvent = "Presence.leave"
)

// MaxPresenceBytes bounds the encoded size of a member's Info and of each
// of its join and leave messages.
const MaxPresenceBytes = 8 << 10

// Presence is what a client shows of itself in a room it joins with
// JoinWithPresence.
//
// Presence lists who is in a room across the cluster, with what the
// application tells about each member, and tells the room's members when
// someone comes or goes; it is the counterpart of Phoenix's
// Presence.track and of Centrifugo's presence with join/leave messages.
// A client is in a room's presence from JoinWithPresence until it leaves
// the room (Client.Leave), disconnects (for any reason, including a
// drop it later resumes from: like room membership, presence belongs to
// the connection, and a resumed client joins again), or its server stops
// or dies. Server.Presence lists the members.
//
// When the client becomes present, Joined is published to the room; when
// it stops being present, Left is. Both reach every member of the room on
// every server, like Server.Publish, so that clients can keep a list of
// who is online from the list Server.Presence gives and these messages.
// The joining client gets its own join message (it is a member by then);
// a client leaving does not get its own leave message. Left is encoded
// when the client joins and kept with its presence entry, so that when
// its server dies, another server publishes it (with the Redis broker,
// the node that reaps the dead one, within the broker's documented
// bound: DeadAfter and a reaper round, about 6.3 s by default). A server
// the broker took for dead while it was only cut off from it adds its
// members' entries again when it is back, and publishes their join
// messages again.
//
// Delivery follows room messages: at most once, and a join message may
// reach a member after a Server.Presence list that already holds the
// client (or a leave message after one that still does): apply both as
// idempotent updates.
type Presence struct {
	// Info is the member's public metadata (a name, an avatar, a status),
	// any value that encodes as JSON (json.RawMessage is kept as it is),
	// at most MaxPresenceBytes encoded. Nil, or a value encoded as null,
	// means none. Server.Presence returns it in Member.Info.
	Info any
	// Joined is the message published to the room when the client has
	// become present, encoded as for Server.Send; nil means the default,
	// Push{Name: PresenceJoinEvent, Value: PresenceEvent}.
	Joined any
	// Left is the message published to the room when the client stops
	// being present, encoded as for Server.Send; nil means the default,
	// Push{Name: PresenceLeaveEvent, Value: PresenceEvent}.
	Left any
	// Silent publishes neither message: the client is listed by
	// Server.Presence and nothing more.
	Silent bool
}

// Member is a client present in a room, as Server.Presence lists it and
// the default join and leave messages carry it.
type Member struct {
	// Client is the client's id.
	Client string `json:"client"`
	// User is the client's user id (from the connect hook), if any.
	User string `json:"user,omitempty"`
	// Info is the Presence.Info the client joined with, encoded, or nil.
	Info json.RawMessage `json:"info,omitempty"`
	// JoinedAt is when the client became present in the room (its
	// server's clock, UTC, to the millisecond). Joining again with
	// presence keeps it.
	JoinedAt time.Time `json:"joined_at"`
}

// PresenceEvent is the value of the default join and leave messages:
// {"room": ..., "client": ..., "user": ..., "info": ..., "joined_at": ...}.
type PresenceEvent struct {
	// Room is the room joined or left.
	Room string `json:"room"`
	Member
}

// presence is a room a client is present in. It lives in Client.presence,
// guarded by Client.mu. It keeps what the broker's entry holds and the join
// message, to add the entry again if the broker drops it (restorePresence).
type presence struct {
	joinedAt time.Time
	data     []byte // broker.Member.Data
	joined   []byte // the join message; nil when silent
	left     []byte // the leave message; nil when silent
}

// memberData is what Rocket keeps in broker.Member.Data.
type memberData struct {
	User string          `json:"user,omitempty"`
	Info json.RawMessage `json:"info,omitempty"`
}

// JoinWithPresence joins room as Join does and makes the client present
// in it, cluster-wide, showing p.Info; then it publishes p's join message
// to the room (see Presence). The presence entry is recorded in the
// broker before the join message is published, so a member that gets the
// message finds the client in Server.Presence.
//
// Joining again a room the client is present in replaces its Info and
// messages, keeps its JoinedAt and publishes the join message again (so
// members see the new Info). Join on such a room leaves its presence as it
// is. An error wrapping ErrUnavailable means the broker failed: the
// client may then be in the room without being present in it, or present
// without the other servers' members having been told.
func (cl *Client) JoinWithPresence(ctx context.Context, room string, p Presence) error {
	if cl.leaving() {
		return ErrUnknownClient
	}
	s := cl.srv
	info, err := encodeInfo(p.Info)
	if err != nil {
		return err
	}
	cl.mu.Lock()
	prev := cl.presence[room]
	cl.mu.Unlock()
	joinedAt := time.Now().UTC().Truncate(time.Millisecond)
	if prev != nil {
		joinedAt = prev.joinedAt
	}
	m := Member{Client: cl.id, User: cl.userID, Info: info, JoinedAt: joinedAt}
	var joined, left []byte
	if !p.Silent {
		if joined, err = presenceMessage(p.Joined, PresenceJoinEvent, room, m); err != nil {
			return err
		}
		if left, err = presenceMessage(p.Left, PresenceLeaveEvent, room, m); err != nil {
			return err
		}
	}
	data, err := marshal(memberData{User: cl.userID, Info: info})
	if err != nil {
		return fmt.Errorf("rocket: encode presence of client %s: %w", cl.id, err)
	}
	if err := s.join(ctx, cl, room); err != nil {
		return err
	}
	entry := &presence{joinedAt: joinedAt, data: data, joined: joined, left: left}
	cl.mu.Lock()
	if cl.presence == nil {
		cl.presence = make(map[string]*presence)
	}
	cl.presence[room] = entry
	cl.mu.Unlock()
	err = s.broker.PresenceAdd(ctx, room, broker.Member{
		ClientID: cl.id, ServerID: s.id, Data: data, LeaveMessage: left, JoinedAt: joinedAt,
	})
	if cl.leaving() {
		s.abandonPresence(cl, room, left)
		return ErrUnknownClient
	}
	if err != nil {
		cl.mu.Lock()
		if cl.presence[room] == entry {
			if prev != nil {
				cl.presence[room] = prev
			} else {
				delete(cl.presence, room)
			}
		}
		cl.mu.Unlock()
		return fmt.Errorf("rocket: presence of client %s in room %q: %w: %w", cl.id, room, ErrUnavailable, err)
	}
	if joined != nil {
		return s.publishData(ctx, room, joined)
	}
	return nil
}

// Presence returns the clients present in room on every server of the
// cluster (see Presence), oldest first (by JoinedAt, then client id). It
// returns an error wrapping ErrUnavailable when the broker fails.
func (s *Server) Presence(ctx context.Context, room string) ([]Member, error) {
	if st := s.state.Load(); st == stateNew || st == stateStopped {
		return nil, ErrServerClosed
	}
	entries, err := s.broker.Presence(ctx, room)
	if err != nil {
		return nil, fmt.Errorf("rocket: presence of room %q: %w: %w", room, ErrUnavailable, err)
	}
	out := make([]Member, 0, len(entries))
	for _, e := range entries {
		m := Member{Client: e.ClientID, JoinedAt: e.JoinedAt.UTC()}
		var d memberData
		if json.Unmarshal(e.Data, &d) == nil {
			m.User, m.Info = d.User, d.Info
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int {
		if c := a.JoinedAt.Compare(b.JoinedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.Client, b.Client)
	})
	return out, nil
}

// dropPresence removes cl's presence entry in room, if it has one, and
// publishes its leave message if the entry was still this server's (it is
// not when the client has reconnected to another server since). It is
// called by leave, after the client left the room locally.
func (s *Server) dropPresence(ctx context.Context, cl *Client, room string) error {
	cl.mu.Lock()
	p := cl.presence[room]
	delete(cl.presence, room)
	cl.mu.Unlock()
	if p == nil {
		return nil
	}
	removed, err := s.broker.PresenceRemove(ctx, room, cl.id, s.id)
	if err != nil {
		return fmt.Errorf("rocket: remove presence of client %s in room %q: %w: %w", cl.id, room, ErrUnavailable, err)
	}
	if removed && p.left != nil {
		return s.publishData(ctx, room, p.left)
	}
	return nil
}

// abandonPresence undoes JoinWithPresence for a client that started
// leaving while it ran: its finish may have left the room before the
// presence entry was recorded, so the entry is removed here whatever the
// local state says.
func (s *Server) abandonPresence(cl *Client, room string, left []byte) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), setupTimeout)
	defer cancel()
	if err := s.leave(ctx, cl, room); err != nil {
		s.reportError(&ErrorEvent{Client: cl, Err: err})
	}
	removed, err := s.broker.PresenceRemove(ctx, room, cl.id, s.id)
	if err != nil {
		s.reportError(&ErrorEvent{Client: cl, Err: fmt.Errorf("rocket: remove presence of client %s in room %q: %w", cl.id, room, err)})
		return
	}
	if removed && left != nil {
		if err := s.publishData(ctx, room, left); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
}

// Reclaimed is called by a broker that found this server dead while it was
// alive and has taken it back (broker.Reclaimer): it removed the server's
// presence entries and published their leave messages. The server adds
// them again and publishes their join messages, off the broker's
// goroutine.
func (h brokerHandler) Reclaimed() {
	s := h.s
	if s.state.Load() != stateRunning {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		n := 0
		for _, cl := range s.snapshotClients(nil) {
			cl.mu.Lock()
			entries := maps.Clone(cl.presence)
			cl.mu.Unlock()
			for room, p := range entries {
				s.restorePresence(cl, room, p)
				n++
			}
		}
		s.log.Warn("presence restored after the broker found this server dead", "server", s.id, "entries", n)
	}()
}

// restorePresence adds cl's presence entry p in room to the broker again
// and publishes its join message, unless the client left the room or
// joined it again meanwhile.
func (s *Server) restorePresence(cl *Client, room string, p *presence) {
	ctx, cancel := context.WithTimeout(s.ctx, setupTimeout)
	defer cancel()
	m := broker.Member{ClientID: cl.id, ServerID: s.id, Data: p.data, LeaveMessage: p.left, JoinedAt: p.joinedAt}
	if err := s.broker.PresenceAdd(ctx, room, m); err != nil {
		s.reportError(&ErrorEvent{Client: cl, Err: fmt.Errorf("rocket: restore presence of client %s in room %q: %w", cl.id, room, err)})
		return
	}
	cl.mu.Lock()
	current := cl.presence[room]
	cl.mu.Unlock()
	switch {
	case current == nil || cl.leaving():
		// Gone meanwhile: take back what was just added.
		if _, err := s.broker.PresenceRemove(ctx, room, cl.id, s.id); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: fmt.Errorf("rocket: remove presence of client %s in room %q: %w", cl.id, room, err)})
		}
	case current != p:
		// Joined again meanwhile: that entry is the one to keep.
		s.restorePresence(cl, room, current)
	case p.joined != nil:
		if err := s.publishData(ctx, room, p.joined); err != nil {
			s.reportError(&ErrorEvent{Client: cl, Err: err})
		}
	}
}

// encodeInfo encodes a Presence.Info.
func encodeInfo(info any) (json.RawMessage, error) {
	if info == nil {
		return nil, nil
	}
	var b []byte
	if raw, ok := info.(json.RawMessage); ok {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("rocket: presence info is not valid JSON")
		}
		b = slices.Clone(raw)
	} else {
		var err error
		if b, err = marshal(info); err != nil {
			return nil, fmt.Errorf("rocket: encode presence info: %w", err)
		}
	}
	if string(b) == "null" {
		return nil, nil
	}
	if len(b) > MaxPresenceBytes {
		return nil, fmt.Errorf("rocket: presence info is %d bytes encoded, over MaxPresenceBytes (%d)", len(b), MaxPresenceBytes)
	}
	return b, nil
}

// presenceMessage encodes a join or leave message: msg, or the default
// one named event when msg is nil.
func presenceMessage(msg any, event, room string, m Member) ([]byte, error) {
	if msg == nil {
		msg = Push{Name: event, Value: PresenceEvent{Room: room, Member: m}}
	}
	b, err := encode(msg)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxPresenceBytes {
		return nil, fmt.Errorf("rocket: presence message is %d bytes encoded, over MaxPresenceBytes (%d)", len(b), MaxPresenceBytes)
	}
	return slices.Clone(b), nil
}
