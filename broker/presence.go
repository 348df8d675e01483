package broker

import "time"

// Member is a presence entry: a client shown as present in a room,
// cluster-wide, with what the application tells about it.
//
// # Presence
//
// Presence is separate from room subscriptions: a server subscribes to a
// room for its fan-out, and records with PresenceAdd which of its clients
// the room's members may see. An entry belongs to the server that added
// it (ServerID). It goes away when that server removes it
// (PresenceRemove), when another server adds an entry for the same client
// in the same room (the client reconnected there), or when its server
// unregisters or is found dead. In the last two cases the broker itself
// removes the entry and publishes its LeaveMessage to the room, so that
// the members on the other servers learn that the client has gone even
// though its server cannot tell them any more.
type Member struct {
	// ClientID is the id of the present client.
	ClientID string
	// ServerID is the id of the server holding the client. It must be
	// registered when the entry is added.
	ServerID string
	// Data is what the application shows of the member (Rocket stores
	// JSON); the broker keeps it as it is. Callers may reuse the slice
	// they give PresenceAdd; callers of Presence must not modify the one
	// they get.
	Data []byte
	// LeaveMessage, if not empty, is published to the room (to every
	// server subscribed, as by Publish with an empty from) when the broker
	// removes the entry because its server unregistered or was found
	// dead. PresenceRemove does not publish it: the server removing an
	// entry tells the room itself. Presence returns entries without it.
	LeaveMessage []byte
	// JoinedAt is when the client joined, kept to the millisecond.
	JoinedAt time.Time
}

// Reclaimer is implemented by a Handler whose server restores its presence
// entries when a broker that found the server dead while it was alive (cut
// off from the broker longer than the broker's dead-server timeout, or the
// broker's store lost its data) takes it back: the broker then removed the
// server's entries, publishing their leave messages, and reclaimed its
// clients; it calls Reclaimed once the clients are back. The server adds
// its entries again (and may tell the rooms its members are back).
//
// Reclaimed is called from a broker goroutine and must not block for long.
// A broker that never finds a live server dead (the memory broker) never
// calls it. Rocket's servers implement it.
type Reclaimer interface {
	// Reclaimed tells the server that the broker took it back after
	// finding it dead, its presence entries gone.
	Reclaimed()
}
