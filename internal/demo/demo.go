// Package demo is Rocket's demo application: an echo action and a chat
// with rooms and whispers. cmd/rocket serves it, and Rocket's tests and
// documentation use it.
//
// Actions (see docs/protocol.md):
//
//	Echo.echo    any                         the result is the arguments
//	Chat.join    {"room","name","presence"}  join a room under a name; with "presence": true,
//	                                         be listed by Chat.who, and members get
//	                                         {"Chat.joined": {"room","client","name"}} now and
//	                                         {"Chat.left": {"room","client","name"}} when the
//	                                         client leaves, disconnects or its node dies
//	Chat.leave   {"room"}                    leave a room
//	Chat.say     {"room","text"}             members get {"Chat.message": {"room","from","text"}}
//	Chat.whisper {"to","text"}               client "to" gets {"Chat.whisper": {"from","name","text"}}
//	Chat.who     {"room"}                    the members present in a room, on every node:
//	                                         {"room","members":[{"client","name","joined_at"}]}
package demo

import (
	"errors"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/rocket-go/rocket"
)

// Limits of the demo's inputs.
const (
	MaxRoomLen = 64
	MaxNameLen = 64
	MaxTextLen = 4096
)

// nameKey is where a client's chat name is kept.
const nameKey = "demo.name"

// JoinArgs are the arguments of Chat.join.
type JoinArgs struct {
	Room string `json:"room"`
	Name string `json:"name"`
	// Presence makes the client present in the room (see Chat.who).
	Presence bool `json:"presence,omitempty"`
}

// JoinResult is the result of Chat.join.
type JoinResult struct {
	Room   string `json:"room"`
	Client string `json:"client"`
	Name   string `json:"name"`
}

// RoomArgs are the arguments of Chat.leave and Chat.who.
type RoomArgs struct {
	Room string `json:"room"`
}

// SayArgs are the arguments of Chat.say.
type SayArgs struct {
	Room string `json:"room"`
	Text string `json:"text"`
}

// Message is what room members receive as {"Chat.message": Message}.
type Message struct {
	Room string `json:"room"`
	From string `json:"from"`
	Text string `json:"text"`
}

// WhisperArgs are the arguments of Chat.whisper.
type WhisperArgs struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// Whisper is what the addressee receives as {"Chat.whisper": Whisper}.
type Whisper struct {
	From string `json:"from"`
	Name string `json:"name"`
	Text string `json:"text"`
}

// OK is the result of actions that have nothing else to say.
type OK struct {
	OK bool `json:"ok"`
}

// Register adds the demo's actions to srv.
func Register(srv *rocket.Server) {
	srv.HandleFunc("Echo.echo", func(c *rocket.Context) (any, error) {
		return c.Args(), nil // valid for as long as anyone keeps it
	})
	srv.Handle("Chat.join", rocket.Action(join))
	srv.Handle("Chat.leave", rocket.Action(leave))
	srv.Handle("Chat.say", rocket.Action(say))
	srv.Handle("Chat.whisper", rocket.Action(whisper))
	srv.Handle("Chat.who", rocket.Action(who))
}

func join(c *rocket.Context, in JoinArgs) (JoinResult, error) {
	if err := checkText("room", in.Room, MaxRoomLen); err != nil {
		return JoinResult{}, err
	}
	name := strings.TrimSpace(in.Name)
	if name == "" {
		name = "guest-" + c.Client().ID()
	}
	if err := checkText("name", name, MaxNameLen); err != nil {
		return JoinResult{}, err
	}
	cl := c.Client()
	cl.Set(nameKey, name)
	var err error
	if in.Presence {
		err = cl.JoinWithPresence(c.Context(), in.Room, presence(in.Room, cl.ID(), name))
	} else {
		err = cl.Join(c.Context(), in.Room)
	}
	if err != nil {
		return JoinResult{}, err
	}
	return JoinResult{Room: in.Room, Client: cl.ID(), Name: name}, nil
}

func leave(c *rocket.Context, in RoomArgs) (OK, error) {
	if err := checkText("room", in.Room, MaxRoomLen); err != nil {
		return OK{}, err
	}
	return OK{true}, c.Client().Leave(c.Context(), in.Room)
}

func say(c *rocket.Context, in SayArgs) (OK, error) {
	if err := checkText("room", in.Room, MaxRoomLen); err != nil {
		return OK{}, err
	}
	if err := checkText("text", in.Text, MaxTextLen); err != nil {
		return OK{}, err
	}
	if !slices.Contains(c.Client().Rooms(), in.Room) {
		return OK{}, rocket.Errorf(rocket.CodeUnauthorized, "join room %q before saying something in it", in.Room)
	}
	msg := rocket.Push{Name: "Chat.message", Value: Message{Room: in.Room, From: nameOf(c.Client()), Text: in.Text}}
	return OK{true}, c.Server().Publish(c.Context(), in.Room, msg)
}

func whisper(c *rocket.Context, in WhisperArgs) (OK, error) {
	if in.To == "" {
		return OK{}, rocket.Errorf(rocket.CodeBadArgs, "Chat.whisper: \"to\" is required")
	}
	if err := checkText("text", in.Text, MaxTextLen); err != nil {
		return OK{}, err
	}
	cl := c.Client()
	msg := rocket.Push{Name: "Chat.whisper", Value: Whisper{From: cl.ID(), Name: nameOf(cl), Text: in.Text}}
	err := c.Server().Send(c.Context(), in.To, msg)
	if errors.Is(err, rocket.ErrUnknownClient) {
		return OK{}, rocket.Errorf(rocket.CodeBadArgs, "Chat.whisper: no client %q", in.To)
	}
	return OK{err == nil}, err
}

func nameOf(cl *rocket.Client) string {
	if n, ok := cl.Get(nameKey).(string); ok {
		return n
	}
	return "guest-" + cl.ID()
}

func checkText(field, v string, max int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return rocket.Errorf(rocket.CodeBadArgs, "%q is required", field)
	case utf8.RuneCountInString(v) > max:
		return rocket.Errorf(rocket.CodeBadArgs, "%q is longer than %d characters", field, max)
	}
	return nil
}
