package inventory

import (
	"bytes"
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// header opens every file butter writes, unless the file it replaces
// opened with comments of its own (see Update).
const header = `# Butter Cloud inventory: the machines, mesh, networks and VM addresses
# butter manages. butter rewrites this file, keeping only the comments at
# its top; the version before its last change is in the .bak file beside it.
`

// Marshal is the file butter writes for inv: the header, then the fields
// in a fixed order, with machines, networks and VMs sorted by name and a
// network's machines sorted, so the same inventory always gives the same
// bytes. Optional fields left empty are left out.
func (inv *Inventory) Marshal() ([]byte, error) {
	c := *inv
	c.Machines = slices.Clone(inv.Machines)
	slices.SortStableFunc(c.Machines, func(a, b Machine) int { return cmp.Compare(a.Name, b.Name) })
	c.Networks = slices.Clone(inv.Networks)
	slices.SortStableFunc(c.Networks, func(a, b Network) int { return cmp.Compare(a.Name, b.Name) })
	for i := range c.Networks {
		c.Networks[i].Machines = slices.Clone(c.Networks[i].Machines)
		slices.Sort(c.Networks[i].Machines)
	}
	c.VMs = slices.Clone(inv.VMs)
	slices.SortStableFunc(c.VMs, func(a, b VM) int { return cmp.Compare(a.Name, b.Name) })

	root := node(reflect.ValueOf(c))
	var b bytes.Buffer
	b.WriteString(header)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode inventory: %w", err)
	}
	return spaceSections(b.Bytes()), nil
}

// node is v as a YAML node, fields in struct order.
func node(v reflect.Value) *yaml.Node {
	switch {
	case v.Type() == addrType || v.Type() == prefixType:
		return str(v.Interface().(fmt.Stringer).String())
	case v.Kind() == reflect.String:
		return str(v.String())
	case v.Kind() == reflect.Int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case v.Kind() == reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	case v.Kind() == reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode}
		if v.Type().Elem().Kind() == reflect.String {
			n.Style = yaml.FlowStyle // machines: [a, b, c]
		}
		for i := range v.Len() {
			n.Content = append(n.Content, node(v.Index(i)))
		}
		return n
	case v.Kind() == reflect.Struct:
		n := &yaml.Node{Kind: yaml.MappingNode}
		for _, f := range fieldsOf(v.Type()) {
			fv := v.Field(f.index)
			if f.omitEmpty && (fv.IsZero() || (fv.Kind() == reflect.Slice && fv.Len() == 0)) {
				continue
			}
			n.Content = append(n.Content, str(f.name), node(fv))
		}
		return n
	}
	panic(fmt.Sprintf("inventory: no encoder for %s", v.Type()))
}

// str is a string scalar; the encoder quotes it if it could be read as
// anything else.
func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

// spaceSections puts a blank line before each top-level key but the first,
// for people reading the file.
func spaceSections(b []byte) []byte {
	lines := bytes.SplitAfter(b, []byte("\n"))
	var out bytes.Buffer
	body := false
	for _, l := range lines {
		top := len(l) > 0 && l[0] != ' ' && l[0] != '#' && l[0] != '-' && l[0] != '\n'
		if top && body {
			out.WriteByte('\n')
		}
		if top {
			body = true
		}
		out.Write(l)
	}
	return out.Bytes()
}
