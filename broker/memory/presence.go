package memory

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/rocket-go/rocket/broker"
)

// presenceKey names one presence entry.
type presenceKey struct{ room, client string }

// presenceTable holds the presence entries. It is guarded by Broker.mu;
// its maps are created on first use.
type presenceTable struct {
	rooms    map[string]map[string]*broker.Member // room -> client id -> entry
	byServer map[string]map[presenceKey]struct{}  // server id -> its entries
}

// roomDelivery is a room message to hand to handlers once Broker.mu is
// released.
type roomDelivery struct {
	servers []*server
	room    string
	data    []byte
}

// PresenceAdd records m in room, replacing the client's entry there if
// there is one. m.ServerID must be registered. Data and LeaveMessage are
// copied, and JoinedAt is kept to the millisecond.
func (b *Broker) PresenceAdd(ctx context.Context, room string, m broker.Member) error {
	const op = "presence add"
	if m.ClientID == "" {
		return errors.New("memory: presence add: empty client id")
	}
	if err := b.enter(ctx, op); err != nil {
		return err
	}
	defer b.mu.Unlock()
	if b.servers[m.ServerID] == nil {
		return unknownServer(op, m.ServerID)
	}
	p := &b.presence
	if p.rooms == nil {
		p.rooms = make(map[string]map[string]*broker.Member)
		p.byServer = make(map[string]map[presenceKey]struct{})
	}
	members := p.rooms[room]
	if members == nil {
		members = make(map[string]*broker.Member)
		p.rooms[room] = members
	}
	key := presenceKey{room, m.ClientID}
	if old := members[m.ClientID]; old != nil && old.ServerID != m.ServerID {
		p.unindex(old.ServerID, key)
	}
	members[m.ClientID] = &broker.Member{
		ClientID:     m.ClientID,
		ServerID:     m.ServerID,
		Data:         slices.Clone(m.Data),
		LeaveMessage: slices.Clone(m.LeaveMessage),
		JoinedAt:     m.JoinedAt.Truncate(time.Millisecond),
	}
	idx := p.byServer[m.ServerID]
	if idx == nil {
		idx = make(map[presenceKey]struct{})
		p.byServer[m.ServerID] = idx
	}
	idx[key] = struct{}{}
	return nil
}

// PresenceRemove removes the entry of clientID in room if serverID added
// it, and reports whether it did.
func (b *Broker) PresenceRemove(ctx context.Context, room, clientID, serverID string) (bool, error) {
	if err := b.enter(ctx, "presence remove"); err != nil {
		return false, err
	}
	defer b.mu.Unlock()
	p := &b.presence
	m := p.rooms[room][clientID]
	if m == nil || m.ServerID != serverID {
		return false, nil
	}
	p.remove(presenceKey{room, clientID}, serverID)
	return true, nil
}

// Presence returns the entries of room without their leave messages.
func (b *Broker) Presence(ctx context.Context, room string) ([]broker.Member, error) {
	if err := b.enter(ctx, "presence"); err != nil {
		return nil, err
	}
	defer b.mu.Unlock()
	members := b.presence.rooms[room]
	out := make([]broker.Member, 0, len(members))
	for _, m := range members {
		e := *m
		e.LeaveMessage = nil
		out = append(out, e)
	}
	return out, nil
}

// dropServerPresence removes the entries of serverID and returns their leave
// messages with the servers subscribed to their rooms (the server itself
// must be unsubscribed already). b.mu must be held.
func (b *Broker) dropServerPresence(serverID string) []roomDelivery {
	p := &b.presence
	var out []roomDelivery
	for key := range p.byServer[serverID] {
		m := p.rooms[key.room][key.client]
		p.remove(key, serverID)
		if m == nil || len(m.LeaveMessage) == 0 {
			continue
		}
		if r := b.rooms[key.room]; r != nil {
			out = append(out, roomDelivery{servers: r.handlers, room: key.room, data: m.LeaveMessage})
		}
	}
	delete(p.byServer, serverID)
	return out
}

// remove deletes the entry key of serverID.
func (p *presenceTable) remove(key presenceKey, serverID string) {
	members := p.rooms[key.room]
	delete(members, key.client)
	if len(members) == 0 {
		delete(p.rooms, key.room)
	}
	p.unindex(serverID, key)
}

// unindex forgets that serverID holds the entry key.
func (p *presenceTable) unindex(serverID string, key presenceKey) {
	idx := p.byServer[serverID]
	delete(idx, key)
	if len(idx) == 0 {
		delete(p.byServer, serverID)
	}
}

// deliverRooms hands room messages to their servers' handlers. b.mu must
// not be held.
func deliverRooms(ds []roomDelivery) {
	for _, d := range ds {
		for _, s := range d.servers {
			s.h.DeliverRoom(d.room, d.data)
		}
	}
}
