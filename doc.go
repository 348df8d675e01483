// Package rocket is a realtime WebSocket application framework and server.
//
// Every WebSocket connection becomes a client with a cluster-unique id.
// Clients send JSON commands, {"Controller.action": args} or an array of
// such objects, and Rocket runs the action registered under that name, in
// the order written. Actions reply, push messages to any client of the
// cluster by id, and publish to rooms. A client that disconnects is away for
// a while: what is sent to it meanwhile is kept in its mailbox and handed
// over, in order, when it resumes its session, on any node. Presence
// (Client.JoinWithPresence, Server.Presence) tells who is in a room across
// the cluster, and the room's members when someone comes or goes. Users
// (the connect hook's ConnectReply.UserID) may hold several clients on
// several nodes: Server.UserClients lists them, Server.SendUser reaches
// them all and Server.DisconnectUser ends them all (see UserClient).
//
// A Server is an http.Handler that accepts WebSocket connections:
//
//	srv, err := rocket.New(rocket.Config{})
//	if err != nil { ... }
//	srv.Handle("Echo.echo", rocket.Action(func(c *rocket.Context, in any) (any, error) {
//		return in, nil
//	}))
//	if err := srv.Start(ctx); err != nil { ... }
//	http.ListenAndServe(":9185", srv)
//	...
//	srv.Shutdown(ctx)
//
// One node needs no external service: the default broker lives in memory.
// A cluster of nodes shares a broker (see package broker) through which
// every node reaches every client.
//
// The wire protocol is described in docs/protocol.md.
//
// # Concurrency
//
// The commands of one client run one at a time, in the order they arrived,
// on a goroutine of the server's pool; commands of different clients run in
// parallel. An action may block (the client's next commands wait), and its
// Context is cancelled when the client disconnects. Writes to a client never
// block the writer: output the client does not read is buffered up to
// Config.MaxPendingBytes, past which the client is disconnected.
//
// Server and Client methods are safe for concurrent use, except
// registration (Handle, HandleFunc, Use and the hook setters), which must
// happen before Start. Hooks run on the goroutines documented on their
// event types.
package rocket
