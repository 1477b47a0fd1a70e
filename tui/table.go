package tui

import (
	"strings"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"github.com/butter-cloud/butter/internal/printable"
	"github.com/charmbracelet/x/ansi"
)

type column struct {
	title string
	max   int  // widest it grows to
	right bool // numbers
}

// cell is one value; style names the state word that colours it.
type cell struct {
	text  string
	style string
}

type row struct {
	id     string
	cells  []cell
	detail string // shown under the table when the row is selected
	match  string // lower-cased text the filter searches
}

// table is a scrolling list of rows with a cursor and a filter. It renders
// only the rows on screen, so a frame costs the same for 20 rows or 2,000.
type table struct {
	cols          []column
	all, rows     []row
	filter        string
	cursor, top   int
	width, height int
	widths        []int
	natural       []int
	// memo keeps styled cells: a state word padded to its column is
	// rendered once, not on every row of every frame.
	memo     map[memoKey]string
	memoDark bool
}

type memoKey struct{ style, text string }

func newTable(cols ...column) *table { return &table{cols: cols} }

// SetSize is the component contract: every pane can be resized.
func (t *table) SetSize(w, h int) {
	t.width, t.height = w, max(h, 2)
	t.layout()
	t.clamp()
}

// SetRows replaces the rows, keeping the cursor on the same row.
func (t *table) SetRows(rows []row) {
	keep := t.SelectedID()
	for i := range rows {
		if rows[i].match == "" {
			var b strings.Builder
			for _, c := range rows[i].cells {
				b.WriteString(strings.ToLower(c.text))
				b.WriteByte(' ')
			}
			rows[i].match = b.String()
		}
	}
	t.all = rows
	t.natural = make([]int, len(t.cols))
	for i, c := range t.cols {
		t.natural[i] = ansi.StringWidth(c.title)
	}
	for _, r := range rows {
		for i, c := range r.cells {
			if i < len(t.natural) {
				t.natural[i] = max(t.natural[i], min(len(c.text), t.cols[i].max))
			}
		}
	}
	t.refilter(keep)
	t.layout()
}

// SetFilter shows only the rows containing f (any column, any case).
func (t *table) SetFilter(f string) {
	t.filter = strings.ToLower(f)
	t.refilter(t.SelectedID())
}

func (t *table) refilter(keep string) {
	if t.filter == "" {
		t.rows = t.all
	} else {
		t.rows = make([]row, 0, len(t.all))
		for _, r := range t.all {
			if strings.Contains(r.match, t.filter) {
				t.rows = append(t.rows, r)
			}
		}
	}
	for i, r := range t.rows {
		if r.id == keep {
			t.cursor = i
			break
		}
	}
	t.clamp()
}

// layout shares the width among the columns: each gets its natural width,
// and while they overflow the widest gives a cell up.
func (t *table) layout() {
	if t.natural == nil {
		t.SetRows(nil)
		return
	}
	t.widths = append(t.widths[:0], t.natural...)
	avail := t.width - 2*(len(t.cols)-1) - 1
	sum := 0
	for _, w := range t.widths {
		sum += w
	}
	for sum > avail {
		widest := 0
		for i, w := range t.widths {
			if w > t.widths[widest] {
				widest = i
			}
		}
		if t.widths[widest] <= 4 {
			break
		}
		t.widths[widest]--
		sum--
	}
}

func (t *table) clamp() {
	t.cursor = max(0, min(t.cursor, len(t.rows)-1))
	body := t.height - 1
	if t.cursor < t.top {
		t.top = t.cursor
	}
	if t.cursor >= t.top+body {
		t.top = t.cursor - body + 1
	}
	t.top = max(0, min(t.top, len(t.rows)-body))
}

func (t *table) Move(n int) {
	t.cursor += n
	t.clamp()
}

// Update moves the cursor for a navigation key and says whether msg was
// one; the pane's verbs are the model's.
func (t *table) Update(msg tea.KeyPressMsg, k keyMap) bool {
	switch {
	case key.Matches(msg, k.Up):
		t.Move(-1)
	case key.Matches(msg, k.Down):
		t.Move(1)
	case key.Matches(msg, k.PageUp):
		t.Move(-t.Page())
	case key.Matches(msg, k.PageDown):
		t.Move(t.Page())
	case key.Matches(msg, k.Top):
		t.Top()
	case key.Matches(msg, k.Bottom):
		t.Bottom()
	default:
		return false
	}
	return true
}

func (t *table) Top()    { t.cursor = 0; t.clamp() }
func (t *table) Bottom() { t.cursor = len(t.rows) - 1; t.clamp() }
func (t *table) Page() int {
	return max(1, t.height-2)
}

func (t *table) Selected() (row, bool) {
	if t.cursor < 0 || t.cursor >= len(t.rows) {
		return row{}, false
	}
	return t.rows[t.cursor], true
}

func (t *table) SelectedID() string {
	r, _ := t.Selected()
	return r.id
}

func (t *table) Len() int { return len(t.rows) }

// View renders the header and the rows on screen, padded to the full size.
func (t *table) View(st styles, focused bool) string {
	var b strings.Builder
	b.Grow((t.width + 16) * t.height)
	line := make([]string, len(t.cols))
	for i, c := range t.cols {
		line[i] = fit(c.title, t.widths[i], c.right)
	}
	b.WriteString(st.header.Render(pad(" "+strings.Join(line, "  "), t.width)))
	body := t.height - 1
	for i := t.top; i < t.top+body; i++ {
		b.WriteByte('\n')
		if i >= len(t.rows) {
			if i == 0 {
				msg := "  nothing here yet"
				if t.filter != "" {
					msg = "  nothing matches the filter"
				}
				b.WriteString(st.dim.Render(pad(msg, t.width)))
			} else {
				b.WriteString(strings.Repeat(" ", t.width))
			}
			continue
		}
		r := t.rows[i]
		if i == t.cursor && focused {
			for j := range t.cols {
				line[j] = fit(cellText(r, j), t.widths[j], t.cols[j].right)
			}
			b.WriteString(st.selected.Render(pad("▌"+strings.Join(line, "  "), t.width)))
			continue
		}
		var lb strings.Builder
		if i == t.cursor {
			// The selection of a pane that is not focused: kept, and marked.
			lb.WriteString(st.dim.Render("›"))
		} else {
			lb.WriteByte(' ')
		}
		w := 1
		for j := range t.cols {
			if j > 0 {
				lb.WriteString("  ")
				w += 2
			}
			text := fit(cellText(r, j), t.widths[j], t.cols[j].right)
			w += t.widths[j]
			if j < len(r.cells) && r.cells[j].style != "" {
				text = t.styled(st, r.cells[j].style, text)
			}
			lb.WriteString(text)
		}
		switch {
		case w > t.width:
			b.WriteString(pad(lb.String(), t.width))
		default:
			b.WriteString(lb.String())
			b.WriteString(strings.Repeat(" ", t.width-w))
		}
	}
	return b.String()
}

// styled renders text in the colour of the state word style, once per
// background.
func (t *table) styled(st styles, style, text string) string {
	if t.memo == nil || t.memoDark != st.dark || len(t.memo) > 4096 {
		t.memo, t.memoDark = map[memoKey]string{}, st.dark
	}
	k := memoKey{style, text}
	s, ok := t.memo[k]
	if !ok {
		s = st.state(style).Render(text)
		t.memo[k] = s
	}
	return s
}

func cellText(r row, j int) string {
	if j < len(r.cells) {
		return printable.String(r.cells[j].text)
	}
	return ""
}

// fit truncates or pads s to exactly w cells.
func fit(s string, w int, right bool) string {
	n := ansi.StringWidth(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	if right {
		return strings.Repeat(" ", w-n) + s
	}
	return s + strings.Repeat(" ", w-n)
}

// pad truncates or pads s (plain or styled) to w cells.
func pad(s string, w int) string {
	n := ansi.StringWidth(s)
	if n > w {
		return ansi.Truncate(s, w, "…")
	}
	return s + strings.Repeat(" ", w-n)
}
