package brokertest

import "testing"

// The Rooms subtests (broker.Rooms): Subscribe, Unsubscribe and the
// fan-out of Publish.

var roomsTests = []subtest{
	{"RoomPublish", testRoomPublish},
	{"RoomPublishSkipsOrigin", testRoomPublishSkipsOrigin},
	{"RoomUnsubscribe", testRoomUnsubscribe},
	{"RoomDoubleSubscribe", testRoomDoubleSubscribe},
	{"RoomEmpty", testRoomEmpty},
}

func testRoomPublish(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	_, rc := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	e.subscribe(b, "other")
	msgs := seq("r", 100)
	e.publish("room", msgs...)
	expectMsgs(t, "server a", ra.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	expectMsgs(t, "server b", rb.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	rc.ExpectQuiet(t, QuietPeriod)
	if n := rc.Total(); n != 0 {
		t.Fatalf("unsubscribed server got %d deliveries, want 0", n)
	}
	if got := rb.Room("other"); len(got) != 0 {
		t.Fatalf("room other got %q, want nothing", got)
	}
}

// testRoomPublishSkipsOrigin: the publishing server is not delivered its
// own message; the others are.
func testRoomPublishSkipsOrigin(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	msgs := seq("o", 20)
	for _, m := range msgs {
		if err := e.b.Publish(e.ctx, a, "room", []byte(m)); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	expectMsgs(t, "server b", rb.WaitRoom(t, "room", len(msgs), WaitTimeout), msgs...)
	ra.ExpectQuiet(t, QuietPeriod)
	if n := ra.Total(); n != 0 {
		t.Fatalf("publishing server got %d of its own messages, want 0", n)
	}
}

func testRoomUnsubscribe(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	b, rb := e.server()
	e.subscribe(a, "room")
	e.subscribe(b, "room")
	e.publish("room", "r0")
	ra.WaitRoom(t, "room", 1, WaitTimeout)
	rb.WaitRoom(t, "room", 1, WaitTimeout)
	if err := e.b.Unsubscribe(e.ctx, b, "room"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	// Unsubscribing twice, or from a room never joined, is harmless.
	if err := e.b.Unsubscribe(e.ctx, b, "room"); err != nil {
		t.Fatalf("Unsubscribe again: %v", err)
	}
	if err := e.b.Unsubscribe(e.ctx, b, "never"); err != nil {
		t.Fatalf("Unsubscribe(never joined): %v", err)
	}
	e.publish("room", "r1")
	expectMsgs(t, "still subscribed", ra.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r1")
	rb.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "unsubscribed", rb.Room("room"), "r0")
	// Subscribing again resumes delivery.
	e.subscribe(b, "room")
	e.publish("room", "r2")
	expectMsgs(t, "subscribed again", rb.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r2")
}

func testRoomDoubleSubscribe(t *testing.T, e *env) {
	e.open(defaultConfig)
	a, ra := e.server()
	e.subscribe(a, "room")
	e.subscribe(a, "room")
	e.publish("room", "r0", "r1")
	expectMsgs(t, "room", ra.WaitRoom(t, "room", 2, WaitTimeout), "r0", "r1")
	ra.ExpectQuiet(t, QuietPeriod)
	expectMsgs(t, "room", ra.Room("room"), "r0", "r1")
	// One Unsubscribe undoes both.
	if err := e.b.Unsubscribe(e.ctx, a, "room"); err != nil {
		t.Fatalf("Unsubscribe: %v", err)
	}
	e.publish("room", "r2")
	ra.ExpectQuiet(t, QuietPeriod)
}

func testRoomEmpty(t *testing.T, e *env) {
	e.open(defaultConfig)
	_, ra := e.server()
	e.publish("nobody", "r0")
	ra.ExpectQuiet(t, QuietPeriod)
}
