package memory_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/broker/memory"
)

// printer is a broker.Handler that prints what it is given.
type printer struct{ name string }

func (p printer) Deliver(clientID string, _ uint64, data []byte) {
	// Client ids are "<epoch>-<n>", the epoch random per Broker.
	_, n, _ := strings.Cut(clientID, "-")
	fmt.Printf("%s: to client number %s: %s\n", p.name, n, data)
}

func (p printer) DeliverRoom(room string, data []byte) {
	fmt.Printf("%s: to room %s: %s\n", p.name, room, data)
}

func Example() {
	ctx := context.Background()
	b := memory.New(memory.Config{})
	defer b.Close()

	// A server registers and a client connects to it.
	srv, _ := b.RegisterServer(ctx, printer{"server A"})
	id, _ := b.NewClientID(ctx)
	_ = b.Connect(ctx, broker.Client{ID: id, Server: srv, Session: "secret"})

	// Anyone may send to the client: the broker hands it to its server.
	_ = b.Send(ctx, id, []byte("hello"))

	// While the client is away, its mail is kept until it resumes.
	_ = b.Disconnect(ctx, id, srv)
	_ = b.Send(ctx, id, []byte("you were away"))
	r, _ := b.Resume(ctx, id, "secret", srv, 0)
	for _, m := range r.Mail {
		fmt.Printf("mail on resume: %q\n", m.Data)
	}

	// Output:
	// server A: to client number 1: hello
	// mail on resume: "you were away"
}
