package rocket_test

import (
	"encoding/json"
	"log"

	"github.com/rocket-go/rocket"
)

// Presence: who is in a room, cluster-wide, with join and leave messages
// for the room's members.
func ExampleClient_JoinWithPresence() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	type Enter struct{ Room, Name string }
	srv.Handle("Room.enter", rocket.Action(func(c *rocket.Context, in Enter) (bool, error) {
		err := c.Client().JoinWithPresence(c.Context(), in.Room, rocket.Presence{
			Info:   map[string]string{"name": in.Name},
			Joined: rocket.Push{Name: "Room.joined", Value: in.Name}, // nil: {"Presence.join": PresenceEvent}
			Left:   rocket.Push{Name: "Room.left", Value: in.Name},   // sent even if this node dies
		})
		return err == nil, err
	}))
	srv.Handle("Room.who", rocket.Action(func(c *rocket.Context, room string) ([]string, error) {
		members, err := c.Server().Presence(c.Context(), room)
		if err != nil {
			return nil, err
		}
		names := make([]string, 0, len(members))
		for _, m := range members {
			var info struct{ Name string }
			_ = json.Unmarshal(m.Info, &info)
			names = append(names, info.Name)
		}
		return names, nil
	}))
	url, stop := serve(srv)
	defer stop()

	roundTrip(url, `[{"ref":1,"Room.enter":{"Room":"lobby","Name":"ann"}},{"ref":2,"Room.who":"lobby"}]`, 3)
	// Output:
	// {"Room.joined":"ann"}
	// {"ref":1,"action":"Room.enter","result":true}
	// {"ref":2,"action":"Room.who","result":["ann"]}
}
