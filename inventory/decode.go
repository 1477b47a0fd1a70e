package inventory

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// MaxSize bounds the file: an inventory of a thousand machines is a few
// hundred kilobytes, so anything larger is not one.
const MaxSize = 4 << 20

// Load reads the inventory at path. A missing file is an empty inventory
// (New), not an error. Anything else wrong with the file is an *Error
// naming the file, the lines and every problem at once (wrapped when the
// file cannot be read at all).
func Load(path string) (*Inventory, error) {
	inv, _, err := load(path)
	return inv, err
}

// load is Load that also returns the bytes read (nil for a missing file).
func load(path string) (*Inventory, []byte, error) {
	data, err := readFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return New(), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	inv, err := parse(path, data)
	return inv, data, err
}

func readFile(path string) ([]byte, error) {
	// Stat first: opening a FIFO for reading would wait for a writer.
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	if fi.IsDir() {
		return nil, &Error{Path: path, Problems: []Problem{{Msg: "a folder, not a file; give the inventory file's path"}}}
	}
	if !fi.Mode().IsRegular() {
		return nil, &Error{Path: path, Problems: []Problem{{Msg: fmt.Sprintf("not a regular file (%s)", fi.Mode().Type())}}}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read inventory %s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, &Error{Path: path, Problems: []Problem{{Msg: fmt.Sprintf(
			"larger than %d MiB: too large to be an inventory", MaxSize>>20)}}}
	}
	return data, nil
}

// Parse decodes an inventory strictly and validates it. Fields left out
// take their defaults; an unknown field, a value of the wrong type, a key
// given twice, an alias or anchor, and every problem Validate finds are
// errors, all reported at once in an *Error with their lines.
func Parse(data []byte) (*Inventory, error) {
	return parse("", data)
}

func parse(path string, data []byte) (*Inventory, error) {
	fail := func(line int, format string, a ...any) error {
		return &Error{Path: path, Problems: []Problem{{Line: line, Msg: fmt.Sprintf(format, a...)}}}
	}
	if !utf8.Valid(data) {
		return nil, fail(lineAt(data, invalidUTF8At(data)), "not UTF-8 text: this is not an inventory file")
	}
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return nil, fail(lineAt(data, i), "a NUL byte: this is not an inventory file")
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fail(0, "empty: an inventory has at least \"version: %d\"", Version)
		}
		return nil, yamlError(path, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		line := extra.Line
		if err != nil {
			return nil, yamlError(path, err)
		}
		return nil, fail(line, "a second YAML document: an inventory is one document")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}

	d := &decoder{lines: map[string]int{}}
	if !d.noAliases(root) {
		return nil, d.error(path)
	}
	if root.Kind != yaml.MappingNode {
		return nil, fail(root.Line, "want a mapping with version, mesh, machines, networks and vms; found %s", kindName(root))
	}
	if err := d.version(path, root); err != nil {
		return nil, err
	}

	inv := New()
	d.value(root, reflect.ValueOf(inv).Elem(), "")
	if len(d.probs) > 0 {
		return nil, d.error(path)
	}
	if probs := inv.validate(); len(probs) > 0 {
		return nil, toError(path, probs, d.lines)
	}
	return inv, nil
}

func (d *decoder) error(path string) error {
	e := &Error{Path: path, Problems: d.probs}
	if len(d.probs) > maxProblems {
		e.Problems = append(d.probs[:maxProblems:maxProblems], Problem{Msg: fmt.Sprintf("… and %d more problems", len(d.probs)-maxProblems)})
	}
	return e
}

// version checks the version first: a file from a newer butter gets one
// clear message, not a list of fields this one does not know.
func (d *decoder) version(path string, root *yaml.Node) error {
	fail := func(line int, format string, a ...any) error {
		return &Error{Path: path, Problems: []Problem{{Line: line, Msg: fmt.Sprintf(format, a...)}}}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "version" {
			continue
		}
		n, err := strconv.Atoi(v.Value)
		switch {
		case v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil:
			return fail(v.Line, "version %q: want %d", v.Value, Version)
		case n > Version:
			return fail(v.Line, "version %d: this file was written by a newer butter (this one reads version %d); upgrade butter", n, Version)
		case n != Version:
			return fail(v.Line, "version %d: unknown; the inventory format is version %d", n, Version)
		}
		return nil
	}
	return fail(root.Line, "no version: the file should start with \"version: %d\"", Version)
}

type decoder struct {
	lines map[string]int // place ("machines[1].port") → line, for Validate's problems
	probs []Problem      // what decoding found
}

func (d *decoder) bad(line int, format string, a ...any) {
	d.probs = append(d.probs, Problem{Line: line, Msg: fmt.Sprintf(format, a...)})
}

// noAliases reports the first anchor or alias: butter writes neither, and
// refusing them before anything is decoded means a file built to expand
// exponentially ("billion laughs") costs no more than its size.
func (d *decoder) noAliases(n *yaml.Node) bool {
	switch {
	case n.Kind == yaml.AliasNode:
		d.bad(n.Line, "alias *%s: anchors and aliases are not allowed in the inventory; write the values out", n.Value)
		return false
	case n.Anchor != "":
		d.bad(n.Line, "anchor &%s: anchors and aliases are not allowed in the inventory; write the values out", n.Anchor)
		return false
	}
	for _, c := range n.Content {
		if !d.noAliases(c) {
			return false
		}
	}
	return true
}

var (
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
)

// value decodes n into v, at place at. Nothing of the node is expanded: the
// tree is walked once.
// parseText sets v to what parse makes of n's text; what parse refuses
// is a problem, the text not being want.
func parseText[T any](d *decoder, n *yaml.Node, v reflect.Value, name, want string, parse func(string) (T, error)) {
	s, ok := d.text(n, name)
	if !ok {
		return
	}
	x, err := parse(s)
	if err != nil {
		d.bad(n.Line, "%s %q: %s", name, s, want)
		return
	}
	v.Set(reflect.ValueOf(x))
}

// scalar decodes n into out when it is a scalar of the YAML tag; anything
// else is a problem that says what it wants. A whole number out of an
// int's range is one too.
func (d *decoder) scalar(n *yaml.Node, name, tag, want string, out any) bool {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tag {
		d.bad(n.Line, "%s: %s, found %s", name, want, describe(n))
		return false
	}
	if err := n.Decode(out); err != nil {
		if tag == "!!int" {
			d.bad(n.Line, "%s %s: not a whole number this butter can hold", name, n.Value)
		} else {
			d.bad(n.Line, "%s: %s, found %s", name, want, describe(n))
		}
		return false
	}
	return true
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, at string) {
	name := at
	if name == "" {
		name = "the inventory"
	}
	d.lines[at] = n.Line
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // "key:" with nothing: the default
	}
	switch {
	case v.Type() == addrType:
		parseText(d, n, v, name, "not an IP address", netip.ParseAddr)
	case v.Type() == prefixType:
		parseText(d, n, v, name, "not an address range such as 10.100.1.0/24", netip.ParsePrefix)
	case v.Kind() == reflect.String:
		if s, ok := d.text(n, name); ok {
			v.SetString(s)
		}
	case v.Kind() == reflect.Int:
		var i int
		if d.scalar(n, name, "!!int", "want a whole number", &i) {
			v.SetInt(int64(i))
		}
	case v.Kind() == reflect.Bool:
		var b bool
		if d.scalar(n, name, "!!bool", "want true or false", &b) {
			v.SetBool(b)
		}
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.bad(n.Line, "%s: want a list, found %s", name, describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			e := s.Index(i)
			if f, ok := e.Addr().Interface().(interface{ fillDefaults() }); ok {
				f.fillDefaults()
			}
			d.value(c, e, fmt.Sprintf("%s[%d]", at, i))
		}
		v.Set(s)
	case v.Kind() == reflect.Struct:
		d.object(n, v, at, name)
	default:
		panic(fmt.Sprintf("inventory: no decoder for %s", v.Type()))
	}
}

// object decodes a mapping into a struct by its yaml field names,
// refusing unknown and repeated keys.
func (d *decoder) object(n *yaml.Node, v reflect.Value, at, name string) {
	if n.Kind != yaml.MappingNode {
		d.bad(n.Line, "%s: want a mapping of fields, found %s", name, describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.bad(k.Line, "%s: a key must be a plain name, found %s", name, describe(k))
			continue
		}
		fat := k.Value
		if at != "" {
			fat = at + "." + k.Value
		}
		if first, dup := seen[k.Value]; dup {
			d.bad(k.Line, "%s: %q given twice (first on line %d)", name, k.Value, first)
			continue
		}
		seen[k.Value] = k.Line
		fi := slices.IndexFunc(fields, func(f field) bool { return f.name == k.Value })
		if fi < 0 {
			d.bad(k.Line, "%s: unknown field %q%s", name, k.Value, unknownHint(k.Value, fields))
			continue
		}
		d.value(val, v.Field(fields[fi].index), fat)
	}
}

type field struct {
	name      string
	index     int
	omitEmpty bool
}

// fieldsOf lists a struct's fields by their yaml names, in order.
func fieldsOf(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		tag := t.Field(i).Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name == "-" {
			continue
		}
		fs = append(fs, field{name: name, index: i, omitEmpty: opts == "omitempty"})
	}
	return fs
}

var secretRE = regexp.MustCompile(`(?i)private|secret|password|passphrase|token`)

func unknownHint(key string, fields []field) string {
	if secretRE.MatchString(key) {
		return "; butter keeps no secrets in the inventory: leave keys in their files (a machine's identity is the path of its SSH key)"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return "; known fields: " + strings.Join(names, ", ")
}

// text is a scalar's text. A plain 22 or true read into a string field is
// taken as written.
func (d *decoder) text(n *yaml.Node, name string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.bad(n.Line, "%s: want text, found %s", name, describe(n))
		return "", false
	}
	switch n.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool":
		return n.Value, true
	}
	d.bad(n.Line, "%s: want text, found %s", name, describe(n))
	return "", false
}

func describe(n *yaml.Node) string {
	if n.Kind == yaml.ScalarNode {
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return fmt.Sprintf("%s %q", strings.TrimPrefix(n.ShortTag(), "!!"), v)
	}
	return kindName(n)
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a single value"
	}
	return "nothing"
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlError turns the YAML parser's error into an *Error with its line.
func yamlError(path string, err error) error {
	msg := err.Error()
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	return &Error{Path: path, Problems: []Problem{{Line: line, Msg: "not valid YAML: " + msg}}}
}

// lineAt is the line of byte offset i.
func lineAt(data []byte, i int) int { return bytes.Count(data[:i], []byte("\n")) + 1 }

func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}
