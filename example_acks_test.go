package rocket_test

import (
	"log"

	"github.com/rocket-go/rocket"
)

// Acknowledged delivery: a connection opened with ?acks=1 gets the
// messages sent to its client numbered, and acknowledges them with
// {"ack": N}; until then the cluster keeps them for a resume
// (?session=...&acks=1&ack=<last received>), whatever happens to the
// client's server.
func ExampleClient_Acks() {
	srv, err := rocket.New(rocket.Config{Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	srv.Handle("Notes.post", rocket.Action(func(c *rocket.Context, text string) (bool, error) {
		err := c.Server().Send(c.Context(), c.Client().ID(), rocket.Push{Name: "Notes.new", Value: text})
		return c.Client().Acks(), err
	}))
	url, stop := serve(srv)
	defer stop()

	roundTrip(url+"/?acks=1", `{"ref":1,"Notes.post":"buy milk"}`, 2)
	// Output:
	// {"seq":1,"message":{"Notes.new":"buy milk"}}
	// {"ref":1,"action":"Notes.post","result":true}
}
