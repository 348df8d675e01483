package scaffold

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

// repoRoot returns the root of the Rocket source tree this test runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if mod, _, err := readGoMod(filepath.Join(root, "go.mod")); err != nil || mod != RocketModule {
		t.Fatalf("%s is not Rocket's source tree: module %q, %v", root, mod, err)
	}
	return root
}

func TestCheckName(t *testing.T) {
	for _, name := range []string{"myapp", "MyApp", "my-app", "my_app", "app2", "a.b", "x"} {
		if err := CheckName(name); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", name, err)
		}
	}
	for name, want := range map[string]string{
		"":                      "empty",
		"2app":                  "start with a letter",
		"-app":                  "start with a letter",
		".":                     "start with a letter",
		"..":                    "start with a letter",
		"my app":                `has ' '`,
		"my/app":                `has '/'`,
		`my\app`:                `has '\\'`,
		"héllo":                 `has 'é'`,
		strings.Repeat("a", 65): "longer than 64",
	} {
		err := CheckName(name)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckName(%q) = %v, want an error saying %q", name, err, want)
		}
	}
}

func TestCheckModulePath(t *testing.T) {
	for _, p := range []string{"myapp", "example.com/myapp", "github.com/ann/my-app/v2", "a/b_c/d~e"} {
		if err := CheckModulePath(p); err != nil {
			t.Errorf("CheckModulePath(%q) = %v, want nil", p, err)
		}
	}
	for p, want := range map[string]string{
		"":                "empty",
		"/abs":            "empty element",
		"a/":              "empty element",
		"a//b":            "empty element",
		"a/./b":           "dot",
		"a/../b":          "dot",
		".hidden":         "dot",
		"-x/y":            "starts with '-'",
		"example.com/a b": `has ' '`,
		"a/b@v1":          `has '@'`,
	} {
		err := CheckModulePath(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckModulePath(%q) = %v, want an error saying %q", p, err, want)
		}
	}
}

// files lists the regular files under dir, slash-separated and sorted.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		out = append(out, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestGenerateWritesTheApp(t *testing.T) {
	root := repoRoot(t)
	_, rocketGo, err := readGoMod(filepath.Join(root, "go.mod"))
	if err != nil || rocketGo == "" {
		t.Fatalf("Rocket's go directive: %q, %v", rocketGo, err)
	}
	dir := filepath.Join(t.TempDir(), "parent", "hello")
	if err := Generate(dir, Options{Name: "hello", Module: "example.com/hello", RocketDir: root}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	want := []string{"README.md", "go.mod", "main.go", "main_test.go", "public/index.html"}
	if got := files(t, dir); !slices.Equal(got, want) {
		t.Fatalf("files = %q, want %q", got, want)
	}
	gomod := readFile(t, filepath.Join(dir, "go.mod"))
	wantMod := "module example.com/hello\n\ngo " + rocketGo + "\n\nrequire " + RocketModule + " " + unpublished + "\n\n" +
		"// Rocket is not published on a module proxy: build against a local copy.\n" +
		"replace " + RocketModule + " => " + modQuote(root) + "\n"
	if gomod != wantMod {
		t.Errorf("go.mod:\n%s\nwant:\n%s", gomod, wantMod)
	}
	for name, wants := range map[string][]string{
		"main.go":           {"package main", `"Greeter.hello"`, "func register(srv *rocket.Server)", "ROCKET_WS_ADDR", "ROCKET_HTTP_ADDR", `":9185"`, `":9346"`, "syscall.SIGTERM", "//go:embed public"},
		"main_test.go":      {"rockettest.Start(t, rocket.Config{}, register)", `Call("Greeter.hello"`},
		"public/index.html": {"<title>hello</title>", `from "/rocket.js"`, `rocket.request("Greeter.hello"`},
		"README.md":         {"# hello", "go mod tidy", "go run .", "go test ./...", "http://localhost:9346/"},
	} {
		content := readFile(t, filepath.Join(dir, name))
		for _, w := range wants {
			if !strings.Contains(content, w) {
				t.Errorf("%s has no %q", name, w)
			}
		}
	}
}

func TestGenerateWithoutReplace(t *testing.T) {
	dir := t.TempDir() // exists and is empty: allowed
	if err := Generate(dir, Options{Name: "app", RocketVersion: "v1.2.3", GoVersion: "1.26"}); err != nil {
		t.Fatalf("Generate: %v", err)
	}
	gomod := readFile(t, filepath.Join(dir, "go.mod"))
	if want := "module app\n\ngo 1.26\n\nrequire " + RocketModule + " v1.2.3\n"; gomod != want {
		t.Errorf("go.mod:\n%s\nwant:\n%s", gomod, want)
	}
}

func TestGenerateRefusesANonEmptyDirectory(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "main.go")
	if err := os.WriteFile(keep, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Generate(dir, Options{Name: "app", RocketDir: repoRoot(t)})
	if !errors.Is(err, ErrNotEmpty) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("Generate in a non-empty directory: err = %v, want ErrNotEmpty naming %s", err, dir)
	}
	if got := files(t, dir); !slices.Equal(got, []string{"main.go"}) || readFile(t, keep) != "mine" {
		t.Fatalf("the directory was changed: %q", got)
	}

	// A file where the directory should be is refused too.
	err = Generate(keep, Options{Name: "app", RocketDir: repoRoot(t)})
	if err == nil || readFile(t, keep) != "mine" {
		t.Fatalf("Generate over a file: err = %v", err)
	}
}

func TestGenerateRejectsBadOptions(t *testing.T) {
	root := repoRoot(t)
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "go.mod"), []byte("module example.com/other\n\ngo 1.26\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"bad name", Options{Name: "my app", RocketDir: root}, `app name "my app" has ' '`},
		{"no name", Options{RocketDir: root}, "name is empty"},
		{"bad module", Options{Name: "app", Module: "example.com//app", RocketDir: root}, "empty element"},
		{"not Rocket", Options{Name: "app", RocketDir: other}, `module "example.com/other", not ` + RocketModule},
		{"no go.mod", Options{Name: "app", RocketDir: t.TempDir()}, "go.mod"},
		{"no Rocket", Options{Name: "app", GoVersion: "1.26"}, "neither a Rocket directory nor a Rocket version"},
		{"no Go version", Options{Name: "app", RocketVersion: "v1.0.0"}, "no Go version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "app")
			err := Generate(dir, tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Generate(%+v) = %v, want an error saying %q", tc.o, err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Generate failed but created %s (%v)", dir, err)
			}
		})
	}
}

func TestFindRocket(t *testing.T) {
	root := repoRoot(t)
	for _, start := range []string{".", "templates/app", root} {
		got, err := FindRocket(start)
		if err != nil || got != root {
			t.Errorf("FindRocket(%q) = %q, %v; want %q", start, got, err, root)
		}
	}
	if got, err := FindRocket(t.TempDir()); !errors.Is(err, ErrNoRocket) {
		t.Errorf("FindRocket(temp dir) = %q, %v; want ErrNoRocket", got, err)
	}
}

func TestModQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/work/rocket":    "/work/rocket",
		"/my docs/rocket": `"/my docs/rocket"`,
		`C:\src\rocket`:   `"C:\\src\\rocket"`,
		"/a//b":           `"/a//b"`,
	} {
		if got := modQuote(in); got != want {
			t.Errorf("modQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
