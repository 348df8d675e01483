package rocket_test

import (
	"log"

	"github.com/rocket-go/rocket"
)

// Users: every connection of a user, on every node, gets the message.
func ExampleServer_SendUser() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	srv.OnConnect(func(e *rocket.ConnectEvent) (rocket.ConnectReply, error) {
		// A real app authenticates the user (see package jwtauth).
		return rocket.ConnectReply{UserID: e.Request.URL.Query().Get("user")}, nil
	})
	srv.Handle("Notes.post", rocket.Action(func(c *rocket.Context, text string) (int, error) {
		return c.Server().SendUser(c.Context(), c.Client().UserID(), rocket.Push{Name: "Notes.new", Value: text})
	}))
	// Server.DisconnectUser(ctx, userID, reason) would close every
	// connection of the user and forget its sessions ("sign out
	// everywhere").
	url, stop := serve(srv)
	defer stop()

	roundTrip(url+"/?user=ann", `{"ref":1,"Notes.post":"buy milk"}`, 2)
	// Output:
	// {"Notes.new":"buy milk"}
	// {"ref":1,"action":"Notes.post","result":1}
}
