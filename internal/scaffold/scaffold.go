// Package scaffold generates a new Rocket application: what `rocket new`
// writes.
//
// The generated app is a Go module with one controller (Greeter, its action
// Greeter.hello), a main.go that serves WebSockets on :9185 and the page,
// /rocket.js and WebSockets at /ws on :9346 (ROCKET_WS_ADDR and
// ROCKET_HTTP_ADDR override them) and shuts down gracefully on SIGINT or
// SIGTERM, a page in public/ that calls the action with rocket.js, a test
// using rockettest, and a README. The files are rendered from templates
// embedded in this package.
//
// Rocket is not published on a module proxy, so the app's go.mod normally
// replaces Rocket's module path with a local Rocket source tree
// (Options.RocketDir). The generator writes go.mod without go.sum: run
// `go mod tidy` in the new app before building it.
package scaffold

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"go/format"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
)

// RocketModule is the module path of Rocket.
const RocketModule = "github.com/rocket-go/rocket"

// unpublished is the version required of Rocket when it is replaced by a
// local directory: the conventional zero pseudo-version.
const unpublished = "v0.0.0-00010101000000-000000000000"

// Errors returned by Generate and FindRocket; test with errors.Is.
var (
	// ErrNotEmpty: the directory to generate in exists and is not empty.
	ErrNotEmpty = errors.New("directory exists and is not empty")
	// ErrNoRocket: no Rocket source tree was found.
	ErrNoRocket = errors.New("no Rocket source tree found")
)

//go:embed all:templates
var templates embed.FS

// templateRoot is the directory of templates; every file under it ending
// in ".tmpl" becomes the file of the same path without ".tmpl".
const templateRoot = "templates/app"

// Options say what app to generate.
type Options struct {
	// Name is the app's name: it titles the README and the page, and is
	// the module path when Module is empty. It must pass CheckName.
	Name string
	// Module is the app's module path. Empty means Name. It must pass
	// CheckModulePath.
	Module string
	// RocketDir is the directory of a Rocket source tree (the one holding
	// Rocket's go.mod). When set, the app's go.mod replaces Rocket's module
	// with its absolute path, and its go directive is Rocket's.
	RocketDir string
	// RocketVersion is the version of Rocket the app requires. Empty means
	// the zero pseudo-version, which resolves only through RocketDir; so
	// RocketDir and RocketVersion cannot both be empty.
	RocketVersion string
	// GoVersion is the app's go directive, such as "1.26". Empty means
	// Rocket's, read from RocketDir's go.mod; it is required without
	// RocketDir.
	GoVersion string
}

// data is what the templates see.
type data struct {
	Name          string
	Module        string
	GoVersion     string
	RocketModule  string
	RocketVersion string
	RocketDir     string // absolute, quoted for go.mod if needed; empty without replace
}

// Generate writes a new app described by o into dir, which must not exist
// or be empty; it is created with its parents if needed. Nothing is
// written when o is invalid. It returns the errors of CheckName and
// CheckModulePath, ErrNotEmpty (wrapped) when dir has files, and any
// failure to read RocketDir's go.mod or to write a file.
func Generate(dir string, o Options) error {
	d, err := prepare(o)
	if err != nil {
		return err
	}
	files, err := render(d)
	if err != nil {
		return err
	}
	if err := ensureEmpty(dir); err != nil {
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("scaffold: %w", err)
		}
		if err := writeNew(p, f.content); err != nil {
			return fmt.Errorf("scaffold: %w", err)
		}
	}
	return nil
}

// prepare validates o and fills in its defaults.
func prepare(o Options) (data, error) {
	if err := CheckName(o.Name); err != nil {
		return data{}, err
	}
	d := data{
		Name:          o.Name,
		Module:        o.Module,
		GoVersion:     o.GoVersion,
		RocketModule:  RocketModule,
		RocketVersion: o.RocketVersion,
	}
	if d.Module == "" {
		d.Module = o.Name
	}
	if err := CheckModulePath(d.Module); err != nil {
		return data{}, err
	}
	if o.RocketDir != "" {
		abs, err := filepath.Abs(o.RocketDir)
		if err != nil {
			return data{}, fmt.Errorf("scaffold: Rocket directory %s: %w", o.RocketDir, err)
		}
		mod, goVersion, err := readGoMod(filepath.Join(abs, "go.mod"))
		if err != nil {
			return data{}, fmt.Errorf("scaffold: Rocket directory %s: %w", abs, err)
		}
		if mod != RocketModule {
			return data{}, fmt.Errorf("scaffold: Rocket directory %s: its go.mod is module %q, not %s", abs, mod, RocketModule)
		}
		if d.GoVersion == "" {
			d.GoVersion = goVersion
		}
		d.RocketDir = modQuote(abs)
		if d.RocketVersion == "" {
			d.RocketVersion = unpublished
		}
	}
	if d.RocketVersion == "" {
		return data{}, errors.New("scaffold: neither a Rocket directory nor a Rocket version is given")
	}
	if d.GoVersion == "" {
		return data{}, errors.New("scaffold: no Go version: give one, or a Rocket directory whose go.mod has a go directive")
	}
	return d, nil
}

// file is one rendered file; path is slash-separated, relative to the app.
type file struct {
	path    string
	content []byte
}

// render renders every template for d; Go files are gofmt'ed.
func render(d data) ([]file, error) {
	var files []file
	err := fs.WalkDir(templates, templateRoot, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || !strings.HasSuffix(p, ".tmpl") {
			return err
		}
		src, err := fs.ReadFile(templates, p)
		if err != nil {
			return err
		}
		t, err := template.New(p).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return err
		}
		var b bytes.Buffer
		if err := t.Execute(&b, d); err != nil {
			return err
		}
		out := strings.TrimSuffix(strings.TrimPrefix(p, templateRoot+"/"), ".tmpl")
		content := b.Bytes()
		if path.Ext(out) == ".go" {
			if content, err = format.Source(content); err != nil {
				return fmt.Errorf("%s: %w", out, err)
			}
		}
		files = append(files, file{path: out, content: content})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scaffold: render templates: %w", err)
	}
	return files, nil
}

// ensureEmpty creates dir, or checks that it is an empty directory.
func ensureEmpty(dir string) error {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("scaffold: %w", err)
		}
		return nil
	case err != nil:
		return fmt.Errorf("scaffold: %s: %w", dir, err)
	case len(entries) > 0:
		return fmt.Errorf("scaffold: %s: %w; choose another name or remove it first", dir, ErrNotEmpty)
	}
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(name string, content []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// FindRocket looks for a Rocket source tree in dir and its parents: a
// directory holding a go.mod whose module is RocketModule. It returns the
// directory, or an error wrapping ErrNoRocket.
func FindRocket(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("scaffold: %w", err)
	}
	for {
		if mod, _, err := readGoMod(filepath.Join(dir, "go.mod")); err == nil && mod == RocketModule {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("scaffold: %w in %s or its parents", ErrNoRocket, dir)
		}
		dir = parent
	}
}

// readGoMod returns the module path and go version of a go.mod file.
func readGoMod(name string) (module, goVersion string, err error) {
	src, err := os.ReadFile(name)
	if err != nil {
		return "", "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "//")
		fields := strings.Fields(line)
		if len(fields) != 2 {
			continue
		}
		switch fields[0] {
		case "module":
			module = fields[1]
			if u, err := strconv.Unquote(module); err == nil {
				module = u
			}
		case "go":
			goVersion = fields[1]
		}
	}
	if module == "" {
		return "", "", fmt.Errorf("%s has no module directive", name)
	}
	return module, goVersion, nil
}

// modQuote quotes s for go.mod when it is not a plain token.
func modQuote(s string) string {
	for _, r := range s {
		if r <= ' ' || r > '~' || strings.ContainsRune("\"'`\\()[]{},", r) {
			return strconv.Quote(s)
		}
	}
	if strings.Contains(s, "//") || strings.Contains(s, "/*") {
		return strconv.Quote(s)
	}
	return s
}
