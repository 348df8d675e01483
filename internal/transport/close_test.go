package transport

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

func TestOutputPrecedesCloseFrame(t *testing.T) { both(t, testOutputPrecedesCloseFrame) }

func testOutputPrecedesCloseFrame(t *testing.T, secure bool) {
	url, h := serveWith(t, Config{MaxMessageBytes: 1 << 16, MaxPendingBytes: 1 << 20}, secure)
	nc, br := dial(t, url)
	c := <-h.conn
	for i := range 100 {
		if err := c.WriteText([]byte("x" + strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.Close(CloseGoingAway, "bye")
	if err := c.WriteText([]byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after Close = %v, want ErrClosed", err)
	}
	for i := range 100 {
		if got, _ := read(t, nc, br, 2*time.Second); got != "x"+strconv.Itoa(i) {
			t.Fatalf("got %q, want x%d", got, i)
		}
	}
	got, op := read(t, nc, br, 2*time.Second)
	if op != ws.OpClose || len(got) < 2 || int(got[0])<<8|int(got[1]) != CloseGoingAway {
		t.Fatalf("got %v %q, want a close frame with 1001", op, got)
	}
}

func TestCloseReasonFitsAndStaysUTF8(t *testing.T) {
	for _, in := range []string{"", "bye", strings.Repeat("a", 200), strings.Repeat("é", 100), "a" + strings.Repeat("€", 60)} {
		got := CloseReason(in)
		if len(got) > MaxCloseReason || !utf8.ValidString(got) || !strings.HasPrefix(in, got) {
			t.Errorf("CloseReason(%d bytes) = %d bytes %q", len(in), len(got), got)
		}
		if len(in) <= MaxCloseReason && got != in {
			t.Errorf("CloseReason(%q) = %q, want it unchanged", in, got)
		}
	}
}
