package rocket_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/rocket-go/rocket"
)

// benchNode starts a server for a benchmark, with no rate limit.
func benchNode(b *testing.B) (*rocket.Server, string) {
	b.Helper()
	n := startNode(b, rocket.Config{CommandRate: -1, Logger: quiet}, nil)
	return n.srv, n.url
}

func benchDial(b *testing.B, url string) *websocket.Conn {
	b.Helper()
	ws, _, err := websocket.Dial(context.Background(), url, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ws.CloseNow() })
	if _, _, err := ws.Read(context.Background()); err != nil { // welcome
		b.Fatal(err)
	}
	return ws
}

// BenchmarkEchoRoundTrip measures one Echo.echo command with a ref, from a
// WebSocket client over loopback to the reply, one at a time per client
// (client, decoding, dispatch, encoding and the network included).
func BenchmarkEchoRoundTrip(b *testing.B) {
	_, url := benchNode(b)
	frame := []byte(`{"ref":1,"Echo.echo":{"text":"` + strings.Repeat("x", 100) + `"}}`)
	b.SetParallelism(4)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ws := benchDial(b, url)
		ctx := context.Background()
		for pb.Next() {
			if err := ws.Write(ctx, websocket.MessageText, frame); err != nil {
				b.Error(err)
				return
			}
			if _, _, err := ws.Read(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkRoomFanout measures one message published to a room of 100
// members until every member has read it.
func BenchmarkRoomFanout(b *testing.B) {
	srv, url := benchNode(b)
	const members = 100
	var got sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var readers sync.WaitGroup
	for i := range members {
		ws := benchDial(b, url)
		join := fmt.Sprintf(`{"ref":1,"Chat.join":{"room":"bench","name":"m%d"}}`, i)
		if err := ws.Write(ctx, websocket.MessageText, []byte(join)); err != nil {
			b.Fatal(err)
		}
		if _, _, err := ws.Read(ctx); err != nil {
			b.Fatal(err)
		}
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
				got.Done()
			}
		}()
	}
	msg := rocket.Push{Name: "Chat.message", Value: map[string]string{"room": "bench", "from": "bench", "text": "hello"}}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		got.Add(members)
		if err := srv.Publish(ctx, "bench", msg); err != nil {
			b.Fatal(err)
		}
		got.Wait()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*members)/b.Elapsed().Seconds(), "deliveries/s")
	cancel()
	readers.Wait()
}
