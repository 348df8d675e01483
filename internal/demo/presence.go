package demo

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/rocket-go/rocket"
)

// MemberEvent is what room members receive as {"Chat.joined": MemberEvent}
// when a client joins with presence, and as {"Chat.left": MemberEvent}
// when it leaves, disconnects or its node dies.
type MemberEvent struct {
	Room   string `json:"room"`
	Client string `json:"client"`
	Name   string `json:"name"`
}

// WhoResult is the result of Chat.who.
type WhoResult struct {
	Room    string      `json:"room"`
	Members []WhoMember `json:"members"`
}

// WhoMember is a member listed by Chat.who.
type WhoMember struct {
	Client   string    `json:"client"`
	Name     string    `json:"name"`
	JoinedAt time.Time `json:"joined_at"`
}

// memberInfo is the presence info of a chat member.
type memberInfo struct {
	Name string `json:"name"`
}

// presence is how a client named name shows itself in room.
func presence(room, client, name string) rocket.Presence {
	ev := MemberEvent{Room: room, Client: client, Name: name}
	return rocket.Presence{
		Info:   memberInfo{Name: name},
		Joined: rocket.Push{Name: "Chat.joined", Value: ev},
		Left:   rocket.Push{Name: "Chat.left", Value: ev},
	}
}

// who lists the members present in a room, oldest first. Only members of
// the room (with or without presence) may ask.
func who(c *rocket.Context, in RoomArgs) (WhoResult, error) {
	if err := checkText("room", in.Room, MaxRoomLen); err != nil {
		return WhoResult{}, err
	}
	if !slices.Contains(c.Client().Rooms(), in.Room) {
		return WhoResult{}, rocket.Errorf(rocket.CodeUnauthorized, "join room %q before asking who is in it", in.Room)
	}
	members, err := c.Server().Presence(c.Context(), in.Room)
	if err != nil {
		return WhoResult{}, err
	}
	out := WhoResult{Room: in.Room, Members: make([]WhoMember, 0, len(members))}
	for _, m := range members {
		var info memberInfo
		if len(m.Info) > 0 {
			_ = json.Unmarshal(m.Info, &info)
		}
		if info.Name == "" {
			info.Name = "guest-" + m.Client
		}
		out.Members = append(out.Members, WhoMember{Client: m.Client, Name: info.Name, JoinedAt: m.JoinedAt})
	}
	return out, nil
}
