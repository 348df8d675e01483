package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"

	"github.com/rocket-go/rocket/internal/scaffold"
)

// newUsage heads the help of `rocket new`.
const newUsage = `usage: rocket new NAME [-module PATH] [-rocket DIR]

Creates a ready-to-run Rocket app in the directory NAME, which must not
exist or be empty: go.mod, main.go (a Greeter controller with the action
Greeter.hello), public/index.html, main_test.go and README.md. NAME may be
a path, such as ../apps/myapp: its last element names the app. Then:
cd NAME && go mod tidy && go run .

Flags (before or after NAME):
`

// newMain runs `rocket new` with args, the command-line arguments after
// "new", and returns the process's exit status.
func newMain(args []string) int {
	wd, err := os.Getwd()
	if err == nil {
		err = runNew(args, wd, os.Stdout, os.Stderr)
	}
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	default:
		fmt.Fprintln(os.Stderr, "rocket new:", err)
		return 1
	}
}

// runNew creates the app named in args in the directory of that name
// (relative to wd), and tells out what to do next. Usage and help go to
// errOut.
func runNew(args []string, wd string, out, errOut io.Writer) error {
	fset := flag.NewFlagSet("rocket new", flag.ContinueOnError)
	fset.SetOutput(errOut)
	fset.Usage = func() {
		fmt.Fprint(errOut, newUsage)
		fset.PrintDefaults()
	}
	module := fset.String("module", "", "module path of the new app (default: the last element of NAME)")
	rocketDir := fset.String("rocket", "", "Rocket source tree the app builds against (a go.mod replace); default: the one found above the working directory or where this rocket was built")
	// The flag package stops at the first argument that is not a flag:
	// parse again after each one, so that flags may follow NAME.
	var names []string
	for {
		if err := fset.Parse(args); err != nil {
			return err
		}
		if fset.NArg() == 0 {
			break
		}
		names = append(names, fset.Arg(0))
		args = fset.Args()[1:]
	}
	switch {
	case len(names) == 0:
		fset.Usage()
		return errors.New("NAME is missing")
	case len(names) > 1:
		return fmt.Errorf("one NAME only, got %q (flags go before or after it)", names)
	}
	// NAME may be a path: its last element names the app.
	dir := names[0]
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(wd, dir)
	}
	name := filepath.Base(dir)
	// Check the name before looking for Rocket: its error is the likelier.
	if err := scaffold.CheckName(name); err != nil {
		return err
	}
	o := scaffold.Options{Name: name, Module: *module}
	var found string
	if *rocketDir != "" {
		o.RocketDir = *rocketDir
		if !filepath.IsAbs(o.RocketDir) {
			o.RocketDir = filepath.Join(wd, o.RocketDir)
		}
	} else {
		_, src, _, _ := runtime.Caller(0)
		info, _ := debug.ReadBuildInfo()
		loc, err := locateRocket(wd, src, info)
		if err != nil {
			return err
		}
		o.RocketDir, o.RocketVersion, o.GoVersion = loc.dir, loc.version, loc.goVersion
		found = loc.how
	}
	if err := scaffold.Generate(dir, o); err != nil {
		return err
	}
	if found != "" {
		fmt.Fprintf(out, "Using Rocket %s.\n", found)
	}
	fmt.Fprintf(out, "Created the app %s in %s. Next:\n\n\tcd %s\n\tgo mod tidy    # fetches the dependencies, writes go.sum\n\tgo test ./...\n\tgo run .       # then open http://localhost:9346/\n", name, dir, names[0])
	return nil
}

// rocketSource says which Rocket a new app builds against.
type rocketSource struct {
	dir       string // a local Rocket source tree, or empty
	version   string // the version to require without dir, or empty
	goVersion string // the go directive without dir, or empty
	how       string // how it was found, for the user
}

// releaseVersion matches a release version of a module, as opposed to a
// pseudo-version or a version stamped from a work tree.
var releaseVersion = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+$`)

// goRelease extracts the Go version from a build's Go version string.
var goRelease = regexp.MustCompile(`^go([0-9]+\.[0-9]+(\.[0-9]+)?)`)

// locateRocket finds the Rocket a new app can build against: a Rocket
// source tree at or above wd, then one at or above src (the path of a
// source file of this binary, as compiled), then, if info says this binary
// is a release of Rocket, that release from the module proxy. Otherwise
// it returns an error saying to pass -rocket.
func locateRocket(wd, src string, info *debug.BuildInfo) (rocketSource, error) {
	if dir, err := scaffold.FindRocket(wd); err == nil {
		return rocketSource{dir: dir, how: "at " + dir + " (found above the working directory)"}, nil
	}
	// Without -trimpath, the compiler keeps the absolute paths of the
	// sources: the tree this binary was built from, if it is still there.
	if filepath.IsAbs(src) {
		if dir, err := scaffold.FindRocket(filepath.Dir(src)); err == nil {
			return rocketSource{dir: dir, how: "at " + dir + " (where this rocket was built from)"}, nil
		}
	}
	if info != nil && info.Main.Path == scaffold.RocketModule && releaseVersion.MatchString(info.Main.Version) {
		if m := goRelease.FindStringSubmatch(info.GoVersion); m != nil {
			return rocketSource{version: info.Main.Version, goVersion: m[1], how: info.Main.Version + " (this rocket's version)"}, nil
		}
	}
	return rocketSource{}, fmt.Errorf("cannot find Rocket's source tree above %s nor where this rocket was built: "+
		"pass -rocket DIR, the directory holding Rocket's go.mod (Rocket is not published on a module proxy, so the app builds against a local copy)", wd)
}
