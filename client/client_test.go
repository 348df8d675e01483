package client

import (
	"context"
	"io/fs"
	"os/exec"
	"testing"
	"time"
)

// TestJavaScript runs the client's own tests (rocket.test.js, against a
// fake WebSocket) with Node.js's test runner.
func TestJavaScript(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node not found: the JavaScript client's tests need Node.js 20 or newer (Debian: apt-get install nodejs)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--test", "rocket.test.js").CombinedOutput()
	if err != nil {
		t.Fatalf("node --test rocket.test.js: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

func TestEmbedded(t *testing.T) {
	for _, name := range []string{"rocket.js", "rocket.d.ts"} {
		b, err := fs.ReadFile(Files, name)
		if err != nil || len(b) == 0 {
			t.Errorf("%s not embedded: %v", name, err)
		}
	}
}
