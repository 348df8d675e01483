package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// publicFS returns the directory served on the HTTP port: dir, opened as an
// os.Root so that no path (symbolic links included) leads out of it, or the
// built-in chat page when dir is empty.
func publicFS(dir string) (fs.FS, error) {
	if dir == "" {
		return fs.Sub(publicFiles, "public")
	}
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("public directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("public directory %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("public directory: %w", err)
	}
	// The root stays open for the life of the process.
	return root.FS(), nil
}

// staticFiles serves the regular files of fsys. It answers 404 for a path
// with an element starting with a dot (".env", ".git/config"), for
// anything that is not a regular file or a directory, and for whatever
// fsys refuses to open (with an os.Root: a symbolic link leading out of
// it). A directory is never listed: "/" and "dir/" serve the directory's
// index.html, and 404 without one; "dir" redirects to "dir/". Content
// types follow the requested name's extension, or the content when the
// extension is unknown (http.ServeContent).
func staticFiles(fsys fs.FS) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upath := r.URL.Path
		if !strings.HasPrefix(upath, "/") {
			upath = "/" + upath
		}
		name := strings.TrimPrefix(path.Clean(upath), "/")
		if name == "" {
			name = "."
		}
		for _, elem := range strings.Split(name, "/") {
			if elem != "." && strings.HasPrefix(elem, ".") {
				http.NotFound(w, r)
				return
			}
		}
		f, st, err := openRegular(fsys, name)
		if errors.Is(err, errIsDir) {
			if !strings.HasSuffix(upath, "/") {
				if upath != "/"+name {
					http.NotFound(w, r) // not clean (net/http's mux cleans paths first)
					return
				}
				target := path.Base(name) + "/"
				if r.URL.RawQuery != "" {
					target += "?" + r.URL.RawQuery
				}
				http.Redirect(w, r, target, http.StatusMovedPermanently)
				return
			}
			name = path.Join(name, "index.html")
			f, st, err = openRegular(fsys, name)
		} else if err == nil && strings.HasSuffix(upath, "/") && upath != "/" {
			// A file named as a directory.
			f.Close()
			err = fs.ErrNotExist
		}
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		rs, ok := f.(io.ReadSeeker)
		if !ok {
			http.Error(w, "file not seekable", http.StatusInternalServerError)
			return
		}
		http.ServeContent(w, r, path.Base(name), st.ModTime(), rs)
	})
}

// errIsDir is openRegular's answer for a directory.
var errIsDir = errors.New("is a directory")

// openRegular opens name in fsys if it is a regular file; for a directory
// it returns errIsDir.
func openRegular(fsys fs.FS, name string) (fs.File, fs.FileInfo, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case st.IsDir():
		err = errIsDir
	case !st.Mode().IsRegular():
		err = fs.ErrNotExist
	default:
		return f, st, nil
	}
	f.Close()
	return nil, nil, err
}
