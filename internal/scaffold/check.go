package scaffold

import (
	"fmt"
	"strings"
)

// maxNameLen bounds an app's name.
const maxNameLen = 64

// CheckName reports whether name can name a new app (and its directory):
// a letter first, then letters, digits, '-', '_' or '.', at most 64 ASCII
// characters. The error says what is wrong.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("scaffold: the app's name is empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("scaffold: app name %q is longer than %d characters", name, maxNameLen)
	case !isLetter(rune(name[0])):
		return fmt.Errorf("scaffold: app name %q must start with a letter", name)
	}
	for _, r := range name {
		if !isLetter(r) && !isDigit(r) && !strings.ContainsRune("-_.", r) {
			return fmt.Errorf("scaffold: app name %q has %q: use letters, digits, '-', '_' and '.' only", name, r)
		}
	}
	return nil
}

// CheckModulePath reports whether p is a valid Go module path: elements
// separated by single slashes, each made of ASCII letters, digits and
// '-', '.', '_', '~', not starting or ending with '.', the first not
// starting with '-'. The error says what is wrong.
func CheckModulePath(p string) error {
	if p == "" {
		return fmt.Errorf("scaffold: the module path is empty")
	}
	for i, elem := range strings.Split(p, "/") {
		if err := checkElem(elem, i == 0); err != nil {
			return fmt.Errorf("scaffold: module path %q: %s", p, err)
		}
	}
	return nil
}

// checkElem checks one element of a module path.
func checkElem(elem string, first bool) error {
	switch {
	case elem == "":
		return fmt.Errorf("empty element (leading, trailing or double slash)")
	case elem[0] == '.' || elem[len(elem)-1] == '.':
		return fmt.Errorf("element %q starts or ends with a dot", elem)
	case first && elem[0] == '-':
		return fmt.Errorf("first element %q starts with '-'", elem)
	}
	for _, r := range elem {
		if !isLetter(r) && !isDigit(r) && !strings.ContainsRune("-._~", r) {
			return fmt.Errorf("element %q has %q: use ASCII letters, digits and '-', '.', '_', '~'", elem, r)
		}
	}
	return nil
}

func isLetter(r rune) bool { return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' }

func isDigit(r rune) bool { return '0' <= r && r <= '9' }
