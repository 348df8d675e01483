package rocket

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// room is the local membership of one room. The server subscribes to the
// room's fan-out in the broker while the room has local members.
//
// Lock order: room.mu before Server.roomsMu before Client.mu.
type room struct {
	mu         sync.Mutex
	members    map[*Client]struct{}
	subscribed bool
	dead       bool // removed from Server.rooms; get a new one
	// snapshot lists the members for fan-out. It is built when needed
	// after a change and never modified, so deliveries use it unlocked.
	snapshot []*Client
}

// fanoutChunk is how many members one goroutine writes to in a row when a
// room message is fanned out in parallel.
const fanoutChunk = 256

// Join adds the client to room. Messages published to the room, from any
// server of the cluster, are sent to it until it leaves or disconnects.
// Joining twice is the same as once. Room membership belongs to the
// connection: a client that resumes joins its rooms again.
func (cl *Client) Join(ctx context.Context, room string) error {
	if cl.leaving() {
		return ErrUnknownClient
	}
	return cl.srv.join(ctx, cl, room)
}

// Leave removes the client from room. If it was present in the room (see
// JoinWithPresence), its presence entry is removed and its leave message
// published.
func (cl *Client) Leave(ctx context.Context, room string) error {
	return cl.srv.leave(ctx, cl, room)
}

// Rooms returns the rooms the client is in.
func (cl *Client) Rooms() []string {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	out := make([]string, 0, len(cl.rooms))
	for r := range cl.rooms {
		out = append(out, r)
	}
	return out
}

// Publish sends msg (encoded as for Send) to every member of room on every
// server of the cluster. Members on this server get it even when the broker
// fails; the error (wrapping ErrUnavailable) then says the other servers did
// not.
func (s *Server) Publish(ctx context.Context, room string, msg any) error {
	data, err := encode(msg)
	if err != nil {
		return err
	}
	if s.state.Load() != stateRunning {
		return ErrServerClosed
	}
	return s.publishData(ctx, room, data)
}

// publishData sends data to the members of room on every server.
func (s *Server) publishData(ctx context.Context, room string, data []byte) error {
	// Local members first, so that they are served even when the broker
	// is down; the broker delivers to the other servers.
	s.deliverRoom(room, data)
	if err := s.broker.Publish(ctx, s.id, room, data); err != nil {
		return fmt.Errorf("rocket: publish to room %q: %w: %w", room, ErrUnavailable, err)
	}
	return nil
}

// RoomSize returns the number of this server's clients in room.
func (s *Server) RoomSize(name string) int {
	s.roomsMu.Lock()
	r := s.rooms[name]
	s.roomsMu.Unlock()
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

// getRoom returns the live room record for name, creating it if needed,
// locked.
func (s *Server) getRoom(name string, create bool) *room {
	for {
		s.roomsMu.Lock()
		r := s.rooms[name]
		if r == nil {
			if !create {
				s.roomsMu.Unlock()
				return nil
			}
			r = &room{members: make(map[*Client]struct{})}
			s.rooms[name] = r
		}
		s.roomsMu.Unlock()
		r.mu.Lock()
		if !r.dead {
			return r
		}
		r.mu.Unlock()
	}
}

func (s *Server) join(ctx context.Context, cl *Client, name string) error {
	r := s.getRoom(name, true)
	defer r.mu.Unlock()
	if !r.subscribed {
		if err := s.broker.Subscribe(ctx, s.id, name); err != nil {
			if len(r.members) == 0 {
				s.dropRoom(name, r)
			}
			return fmt.Errorf("rocket: subscribe to room %q: %w: %w", name, ErrUnavailable, err)
		}
		r.subscribed = true
	}
	r.members[cl] = struct{}{}
	r.snapshot = nil
	cl.mu.Lock()
	if cl.rooms == nil {
		cl.rooms = make(map[string]struct{})
	}
	cl.rooms[name] = struct{}{}
	cl.mu.Unlock()
	return nil
}

// leave removes cl from the room, then from the room's presence (the
// client does not get its own leave message).
func (s *Server) leave(ctx context.Context, cl *Client, name string) error {
	err := s.leaveRoom(ctx, cl, name)
	return errors.Join(err, s.dropPresence(ctx, cl, name))
}

func (s *Server) leaveRoom(ctx context.Context, cl *Client, name string) error {
	cl.mu.Lock()
	delete(cl.rooms, name)
	cl.mu.Unlock()
	r := s.getRoom(name, false)
	if r == nil {
		return nil
	}
	defer r.mu.Unlock()
	delete(r.members, cl)
	r.snapshot = nil
	if len(r.members) > 0 {
		return nil
	}
	s.dropRoom(name, r)
	if r.subscribed {
		r.subscribed = false
		if err := s.broker.Unsubscribe(ctx, s.id, name); err != nil {
			return fmt.Errorf("rocket: unsubscribe from room %q: %w: %w", name, ErrUnavailable, err)
		}
	}
	return nil
}

// dropRoom removes r (locked, empty) from the room table.
func (s *Server) dropRoom(name string, r *room) {
	r.dead = true
	s.roomsMu.Lock()
	if s.rooms[name] == r {
		delete(s.rooms, name)
	}
	s.roomsMu.Unlock()
}

// deliverRoom writes a room message to the room's local members. The
// message is encoded once; large rooms are written to by several
// goroutines (one per CPU), and deliverRoom returns when all are done.
func (s *Server) deliverRoom(name string, data []byte) {
	s.roomsMu.Lock()
	r := s.rooms[name]
	s.roomsMu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.snapshot == nil {
		r.snapshot = make([]*Client, 0, len(r.members))
		for cl := range r.members {
			r.snapshot = append(r.snapshot, cl)
		}
	}
	members := r.snapshot
	r.mu.Unlock()

	workers := min(runtime.GOMAXPROCS(0), (len(members)+fanoutChunk-1)/fanoutChunk)
	if workers <= 1 {
		writeAll(members, data)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				end := int(next.Add(fanoutChunk))
				start := end - fanoutChunk
				if start >= len(members) {
					return
				}
				writeAll(members[start:min(end, len(members))], data)
			}
		})
	}
	wg.Wait()
}

func writeAll(members []*Client, data []byte) {
	for _, cl := range members {
		if !cl.leaving() {
			_ = cl.out.send(data)
		}
	}
}
