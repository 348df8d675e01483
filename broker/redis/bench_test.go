package redis

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rocket-go/rocket/broker"
	"github.com/rocket-go/rocket/internal/redistest"
)

// benchParallelism is the number of senders per CPU in the parallel
// benchmarks: enough for rueidis to pipeline commands.
const benchParallelism = 16

// counter is a Handler that counts deliveries and signals when a target is
// reached.
type counter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func newCounter(target int) *counter {
	c := &counter{done: make(chan struct{})}
	c.target.Store(int64(target))
	return c
}

func (c *counter) add() {
	if c.n.Add(1) == c.target.Load() {
		close(c.done)
	}
}

func (c *counter) Deliver(string, uint64, []byte) { c.add() }
func (c *counter) DeliverRoom(string, []byte)     { c.add() }

// wait waits until the target is reached, failing the benchmark after a
// timeout.
func (c *counter) wait(b *testing.B) {
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("%d of %d messages delivered after 30s", c.n.Load(), c.target.Load())
	}
}

// twoNodes returns two Brokers of one cluster on a fresh Redis, a server on
// the second with h and a client on that server.
func twoNodes(b *testing.B, h broker.Handler) (from, to *Broker, serverID, clientID string) {
	return twoNodesAcked(b, h, false)
}

// twoNodesAcked is twoNodes with a client that acknowledges if acked.
func twoNodesAcked(b *testing.B, h broker.Handler, acked bool) (from, to *Broker, serverID, clientID string) {
	srv := redistest.Start(b)
	prefix := uniquePrefix()
	logs := newLogs(b).logger()
	from = newBroker(b, srv, Config{Prefix: prefix, Logger: logs})
	to = newBroker(b, srv, Config{Prefix: prefix, Logger: logs})
	ctx := context.Background()
	serverID, err := to.RegisterServer(ctx, h)
	if err != nil {
		b.Fatal(err)
	}
	clientID, err = to.NewClientID(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := to.Connect(ctx, broker.Client{ID: clientID, Server: serverID, Session: "s", Acked: acked}); err != nil {
		b.Fatal(err)
	}
	return from, to, serverID, clientID
}

// BenchmarkSendAcrossNodes measures Send from one node to a client on
// another, until delivered by the owner's inbox consumer, from parallel
// senders.
func BenchmarkSendAcrossNodes(b *testing.B) { benchSendAcrossNodes(b, false) }

// BenchmarkSendAcrossNodesAcked is BenchmarkSendAcrossNodes to a client
// that acknowledges: each message is also numbered and kept in its
// mailbox, which an Ack every 64 messages trims, as a client would.
func BenchmarkSendAcrossNodesAcked(b *testing.B) { benchSendAcrossNodes(b, true) }

func benchSendAcrossNodes(b *testing.B, acked bool) {
	h := newCounter(b.N)
	from, to, _, clientID := twoNodesAcked(b, h, acked)
	ctx := context.Background()
	data := []byte(`{"type":"event","name":"chat.message","data":{"text":"hello, rocket"}}`)
	var sent atomic.Uint64
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := from.Send(ctx, clientID, data); err != nil {
				b.Error(err)
				return
			}
			if n := sent.Add(1); acked && n%64 == 0 {
				if err := to.Ack(ctx, clientID, n-64); err != nil {
					b.Error(err)
					return
				}
			}
		}
	})
	h.wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkSendSequential is BenchmarkSendAcrossNodes from one goroutine:
// the round trip of one Send.
func BenchmarkSendSequential(b *testing.B) {
	h := newCounter(b.N)
	from, _, _, clientID := twoNodes(b, h)
	ctx := context.Background()
	data := []byte(`{"type":"event","name":"chat.message","data":{"text":"hello, rocket"}}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if err := from.Send(ctx, clientID, data); err != nil {
			b.Fatal(err)
		}
	}
	h.wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkPublishAcrossNodes measures Publish on one node to a room
// subscribed by a server on another, until delivered, from parallel
// publishers.
func BenchmarkPublishAcrossNodes(b *testing.B) {
	h := newCounter(b.N)
	from, to, serverID, _ := twoNodes(b, h)
	ctx := context.Background()
	if err := to.Subscribe(ctx, serverID, "room"); err != nil {
		b.Fatal(err)
	}
	data := []byte(`{"type":"event","name":"chat.message","data":{"text":"hello, rocket"}}`)
	b.SetParallelism(benchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := from.Publish(ctx, "", "room", data); err != nil {
				b.Error(err)
				return
			}
		}
	})
	h.wait(b)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
