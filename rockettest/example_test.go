package rockettest_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/rocket-go/rocket"
	"github.com/rocket-go/rocket/rockettest"
)

// An app with one action that pushes a message to its caller, then
// replies. The push arrives first; Call keeps it for Next.
func Example() {
	app, err := rockettest.New(rocket.Config{Logger: slog.New(slog.DiscardHandler)}, func(srv *rocket.Server) {
		srv.Handle("Greet.hello", rocket.Action(func(c *rocket.Context, in struct{ Name string }) (string, error) {
			err := c.Client().Send(rocket.Push{Name: "Greet.done", Value: in.Name})
			return "hello " + in.Name, err
		}))
	})
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := app.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	var reply string
	if err := c.Call(ctx, "Greet.hello", map[string]string{"Name": "ann"}, &reply); err != nil {
		log.Fatal(err)
	}
	fmt.Println("reply:", reply)
	name, value, err := c.Next(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pushed:", name, string(value))
	// Output:
	// reply: hello ann
	// pushed: Greet.done "ann"
}

// Dial connects to a Rocket server by its URL: here an App's, but it may
// be a server started by another process. Errors from the server come
// back as a *rocket.Error.
func ExampleDial() {
	app, err := rockettest.New(rocket.Config{Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	url := app.URL // e.g. ws://127.0.0.1:9346/ws for a server running elsewhere

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := rockettest.Dial(ctx, url)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	err = c.Call(ctx, "Nope.nothing", nil, nil)
	var re *rocket.Error
	if errors.As(err, &re) {
		fmt.Println("code:", re.Code)
	}
	// Output:
	// code: unknown_action
}

// A client that goes away and comes back with its session token gets
// the messages sent to it meanwhile.
func ExampleSession() {
	app, err := rockettest.New(rocket.Config{Logger: slog.New(slog.DiscardHandler)}, func(srv *rocket.Server) {
		type Note struct{ To, Text string }
		srv.Handle("Note.send", rocket.Action(func(c *rocket.Context, in Note) (bool, error) {
			err := c.Server().Send(c.Context(), in.To, rocket.Push{Name: "Note.new", Value: in.Text})
			return err == nil, err
		}))
	})
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ann, err := app.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	bob, err := app.Dial(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := bob.Close(); err != nil { // returns once the server has let bob go
		log.Fatal(err)
	}
	if err := ann.Call(ctx, "Note.send", map[string]string{"To": bob.ID, "Text": "welcome back"}, nil); err != nil {
		log.Fatal(err)
	}

	back, err := app.Dial(ctx, rockettest.Session(bob.Session))
	if err != nil {
		log.Fatal(err)
	}
	var text string
	if err := back.Expect(ctx, "Note.new", &text); err != nil {
		log.Fatal(err)
	}
	fmt.Println(back.Resumed, back.ID == bob.ID, text)
	// Output:
	// true true welcome back
}

// A connection with Acks gets the messages sent to its client numbered and
// acknowledges them; resuming with Acks(c.Seq()) gets only what came after.
func ExampleAcks() {
	app, err := rockettest.New(rocket.Config{Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer app.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	c, err := app.Dial(ctx, rockettest.Acks(0))
	if err != nil {
		log.Fatal(err)
	}
	send := func(text string) {
		if err := app.Server.Send(ctx, c.ID, rocket.Push{Name: "News.item", Value: text}); err != nil {
			log.Fatal(err)
		}
	}
	send("one")
	var item string
	if err := c.Expect(ctx, "News.item", &item); err != nil {
		log.Fatal(err)
	}
	fmt.Println(item, c.Acks, c.Seq())
	if err := c.Close(); err != nil {
		log.Fatal(err)
	}

	send("two") // kept while the client is away
	again, err := app.Dial(ctx, rockettest.Session(c.Session), rockettest.Acks(c.Seq()))
	if err != nil {
		log.Fatal(err)
	}
	defer again.Close()
	if err := again.Expect(ctx, "News.item", &item); err != nil {
		log.Fatal(err)
	}
	fmt.Println(item, again.Resumed, again.Seq())
	// Output:
	// one true 1
	// two true 2
}
