package main

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rocket-go/rocket/internal/scaffold"
)

// rocketRoot is the Rocket source tree these tests run in.
func rocketRoot(t *testing.T) string {
	t.Helper()
	root, err := scaffold.FindRocket(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// goMod returns the go.mod of the app generated in dir.
func goMod(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatalf("the app's go.mod: %v", err)
	}
	return string(b)
}

// TestNewFromMain runs `rocket new` as a process (through main), with the
// flags after the name.
func TestNewFromMain(t *testing.T) {
	root, wd := rocketRoot(t), t.TempDir()
	cmd := exec.Command(os.Args[0], "new", "myapp", "-module", "example.com/myapp", "-rocket", root)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Dir = wd
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("rocket new: %v\n%s", err, out)
	}
	for _, want := range []string{"Created the app myapp in " + filepath.Join(wd, "myapp"), "cd myapp", "go mod tidy", "go run ."} {
		if !strings.Contains(string(out), want) {
			t.Errorf("rocket new said no %q:\n%s", want, out)
		}
	}
	mod := goMod(t, filepath.Join(wd, "myapp"))
	if !strings.HasPrefix(mod, "module example.com/myapp\n") || !strings.Contains(mod, "replace github.com/rocket-go/rocket => "+root+"\n") {
		t.Errorf("go.mod:\n%s", mod)
	}
	for _, f := range []string{"main.go", "main_test.go", "README.md", "public/index.html"} {
		if _, err := os.Stat(filepath.Join(wd, "myapp", f)); err != nil {
			t.Errorf("no %s: %v", f, err)
		}
	}

	// Again: the directory is not empty any more, so it fails with status 1.
	cmd = exec.Command(os.Args[0], "new", "myapp", "-rocket", root)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Dir = wd
	out, err = cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "rocket new: ") || !strings.Contains(string(out), "not empty") {
		t.Errorf("rocket new over an app: %v\n%s", err, out)
	}
}

func TestNewRelativeRocketAndFlagsFirst(t *testing.T) {
	root, wd := rocketRoot(t), t.TempDir()
	rel, err := filepath.Rel(wd, root)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runNew([]string{"-rocket", rel, "app"}, wd, &out, &out); err != nil {
		t.Fatalf("runNew: %v\n%s", err, out.String())
	}
	// A relative -rocket is taken from the working directory and written
	// absolute, so that the app does not depend on where it was made.
	if mod := goMod(t, filepath.Join(wd, "app")); !strings.HasPrefix(mod, "module app\n") || !strings.Contains(mod, "=> "+root+"\n") {
		t.Errorf("go.mod:\n%s", mod)
	}
}

// TestNewPaths: NAME may be a path, whose last element names the app; "."
// is the working directory, if empty.
func TestNewPaths(t *testing.T) {
	root, wd := rocketRoot(t), t.TempDir()
	var out bytes.Buffer
	if err := runNew([]string{"apps/hello", "-rocket", root}, wd, &out, &out); err != nil {
		t.Fatalf("runNew: %v\n%s", err, out.String())
	}
	if mod := goMod(t, filepath.Join(wd, "apps", "hello")); !strings.HasPrefix(mod, "module hello\n") {
		t.Errorf("go.mod:\n%s", mod)
	}
	if !strings.Contains(out.String(), "cd apps/hello\n") {
		t.Errorf("output:\n%s", out.String())
	}

	empty := filepath.Join(wd, "here")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := runNew([]string{".", "-rocket", root}, empty, &out, &out); err != nil {
		t.Fatalf("runNew .: %v\n%s", err, out.String())
	}
	if mod := goMod(t, empty); !strings.HasPrefix(mod, "module here\n") {
		t.Errorf("go.mod:\n%s", mod)
	}
}

// TestNewFindsRocket: without -rocket, a Rocket source tree is found from
// where this binary was compiled (the temporary working directory has
// none above it).
func TestNewFindsRocket(t *testing.T) {
	if _, src, _, _ := runtime.Caller(0); !filepath.IsAbs(src) {
		t.Skip("built with -trimpath: the binary does not know where its sources are")
	}
	root, wd := rocketRoot(t), t.TempDir()
	var out bytes.Buffer
	if err := runNew([]string{"app"}, wd, &out, &out); err != nil {
		t.Fatalf("runNew: %v\n%s", err, out.String())
	}
	if want := "Using Rocket at " + root; !strings.Contains(out.String(), want) {
		t.Errorf("output has no %q:\n%s", want, out.String())
	}
	if mod := goMod(t, filepath.Join(wd, "app")); !strings.Contains(mod, "=> "+root+"\n") {
		t.Errorf("go.mod:\n%s", mod)
	}
}

func TestNewErrors(t *testing.T) {
	root, empty := rocketRoot(t), t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no name", []string{"-rocket", root}, "NAME is missing"},
		{"two names", []string{"a", "b", "-rocket", root}, `one NAME only, got ["a" "b"]`},
		{"bad name", []string{"my app", "-rocket", root}, `app name "my app" has ' '`},
		{"digit first", []string{"apps/2app", "-rocket", root}, `app name "2app" must start with a letter`},
		{"bad module", []string{"app", "-module", "example.com/a b", "-rocket", root}, `module path "example.com/a b"`},
		{"not Rocket", []string{"app", "-rocket", empty}, "go.mod"},
		{"unknown flag", []string{"app", "-nope"}, "flag provided but not defined: -nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wd := t.TempDir()
			var out bytes.Buffer
			err := runNew(tc.args, wd, &out, &out)
			if err == nil || !strings.Contains(err.Error()+out.String(), tc.want) {
				t.Fatalf("runNew(%q) = %v, output %q; want %q", tc.args, err, out.String(), tc.want)
			}
			if entries, _ := os.ReadDir(wd); len(entries) != 0 {
				t.Fatalf("runNew failed but wrote %d entries", len(entries))
			}
		})
	}
}

func TestLocateRocket(t *testing.T) {
	root := rocketRoot(t)
	nowhere := t.TempDir()

	// Above the working directory first.
	got, err := locateRocket(filepath.Join(root, "cmd", "rocket"), "", nil)
	if err != nil || got.dir != root || !strings.Contains(got.how, "working directory") {
		t.Errorf("from the working directory: %+v, %v", got, err)
	}
	// Then where the binary was compiled.
	got, err = locateRocket(nowhere, filepath.Join(root, "cmd", "rocket", "new.go"), nil)
	if err != nil || got.dir != root || !strings.Contains(got.how, "built from") {
		t.Errorf("from the source path: %+v, %v", got, err)
	}
	// Then a released rocket's own version (a trimmed source path is not
	// absolute, and is skipped).
	release := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: scaffold.RocketModule, Version: "v1.2.3"}}
	got, err = locateRocket(nowhere, "github.com/rocket-go/rocket/cmd/rocket/new.go", release)
	if err != nil || got != (rocketSource{version: "v1.2.3", goVersion: "1.26.8", how: "v1.2.3 (this rocket's version)"}) {
		t.Errorf("from the build info: %+v, %v", got, err)
	}
	// Nothing: a development build, or a pseudo-version stamped from a work
	// tree, cannot be fetched, so the error says to pass -rocket.
	for _, v := range []string{"(devel)", "v0.0.0-20260101000000-abcdefabcdef", "v1.2.3+dirty"} {
		info := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: scaffold.RocketModule, Version: v}}
		_, err := locateRocket(nowhere, "", info)
		if err == nil || !strings.Contains(err.Error(), "pass -rocket DIR") || !strings.Contains(err.Error(), nowhere) {
			t.Errorf("version %s: err = %v, want one saying to pass -rocket", v, err)
		}
	}
}
