package inventory

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Problem is one thing wrong with an inventory.
type Problem struct {
	// Line is where in the file the problem is; 0 when that is not known
	// (an inventory built in memory, or the file as a whole).
	Line int
	// Msg says what is wrong and, where it can, what to do about it.
	Msg string
}

// Error is what Load and Validate return for an inventory that is wrong:
// every problem found, at once.
type Error struct {
	// Path is the file; empty for an inventory built in memory.
	Path     string
	Problems []Problem
}

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		p := e.Problems[0]
		switch {
		case e.Path == "" && p.Line > 0:
			return fmt.Sprintf("inventory line %d: %s", p.Line, p.Msg)
		case e.Path == "":
			return "inventory: " + p.Msg
		case p.Line > 0:
			return fmt.Sprintf("%s:%d: %s", e.Path, p.Line, p.Msg)
		default:
			return e.Path + ": " + p.Msg
		}
	}
	var b strings.Builder
	name := "inventory"
	if e.Path != "" {
		name = "inventory " + e.Path
	}
	fmt.Fprintf(&b, "%s: %d problems:", name, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n\t")
		switch {
		case p.Line > 0 && e.Path != "":
			fmt.Fprintf(&b, "%s:%d: ", e.Path, p.Line)
		case p.Line > 0:
			fmt.Fprintf(&b, "line %d: ", p.Line)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// problem is a Problem before it has a line: at is the place in the
// document it concerns, such as "machines[2].port", which the loader's
// line table turns into a line.
type problem struct {
	at  string
	msg string
}

// maxProblems bounds what one error lists, so a hostile file cannot make an
// error message as large as itself.
const maxProblems = 50

// toError turns problems into an *Error, finding their lines in lines (nil
// for an inventory built in memory). Nil when there are none.
func toError(path string, probs []problem, lines map[string]int) error {
	if len(probs) == 0 {
		return nil
	}
	if lines != nil {
		// In the order of the file.
		probs = slices.Clone(probs)
		slices.SortStableFunc(probs, func(a, b problem) int { return cmp.Compare(lineOf(lines, a.at), lineOf(lines, b.at)) })
	}
	e := &Error{Path: path}
	for i, p := range probs {
		if i == maxProblems {
			e.Problems = append(e.Problems, Problem{Msg: fmt.Sprintf("… and %d more problems", len(probs)-maxProblems)})
			break
		}
		e.Problems = append(e.Problems, Problem{Line: lineOf(lines, p.at), Msg: p.msg})
	}
	return e
}

// lineOf is the line of the place at, or of the nearest enclosing place
// the file has (a field left out is reported on its object's line).
func lineOf(lines map[string]int, at string) int {
	for at != "" {
		if l, ok := lines[at]; ok {
			return l
		}
		i := strings.LastIndexAny(at, ".[")
		if i < 0 {
			break
		}
		at = at[:i]
	}
	return 0
}
