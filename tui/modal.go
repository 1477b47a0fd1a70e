package tui

import (
	"context"

	"charm.land/bubbles/v2/key"
	tea "charm.land/bubbletea/v2"
	"charm.land/huh/v2"
)

// modalForm is a huh form shown over the dashboard.
type modalForm struct {
	title  string
	form   *huh.Form
	submit func() tea.Cmd // when completed
	cancel func()         // when aborted (esc)
}

func (f *modalForm) resize(w, h int) {
	f.form.WithWidth(min(72, w-6))
}

func (f *modalForm) view(st styles) string {
	return st.title.Render(f.title) + "\n\n" + f.form.View()
}

// openForm shows a form built from groups; submit runs when it completes.
func (m *Model) openForm(title string, submit func() tea.Cmd, cancel func(), groups ...*huh.Group) tea.Cmd {
	km := huh.NewDefaultKeyMap()
	km.Quit = key.NewBinding(key.WithKeys("esc", "ctrl+c"), key.WithHelp("esc", "cancel"))
	dark := m.st.dark
	f := huh.NewForm(groups...).
		WithKeyMap(km).
		WithShowHelp(true).
		WithTheme(huh.ThemeFunc(func(bool) *huh.Styles { return huh.ThemeCharm(dark) }))
	f.SubmitCmd, f.CancelCmd = nil, nil
	m.form = &modalForm{title: title, form: f, submit: submit, cancel: cancel}
	m.form.resize(m.width, m.height)
	init := f.Init()
	// The groups measured their height before they had their width: a
	// size now makes them measure again, so a long description is whole.
	return tea.Batch(init, m.updateForm(tea.WindowSizeMsg{Width: m.width, Height: m.height}))
}

// updateForm passes msg to the open form and closes it when done.
func (m *Model) updateForm(msg tea.Msg) tea.Cmd {
	f := m.form
	if f == nil {
		return nil
	}
	// The form asks for the window size itself; we give it the space it
	// may use instead.
	if ws, ok := msg.(tea.WindowSizeMsg); ok {
		msg = tea.WindowSizeMsg{Width: min(72, ws.Width-6), Height: max(8, ws.Height-6)}
	}
	model, cmd := f.form.Update(msg)
	if hf, ok := model.(*huh.Form); ok {
		f.form = hf
	}
	switch f.form.State {
	case huh.StateCompleted:
		m.form = nil
		var next tea.Cmd
		if f.submit != nil {
			next = f.submit()
		}
		return tea.Batch(next, m.nextAsk())
	case huh.StateAborted:
		m.form = nil
		if f.cancel != nil {
			f.cancel()
		}
		return m.nextAsk()
	}
	return cmd
}

// askMsg is a question from a running task; reply takes the answer.
type askMsg struct {
	question, detail string
	reply            chan bool
}

// askUser asks in the dashboard and waits: it is the Ask given to the
// core's callbacks, which run in tasks, never in Update.
func (m *Model) askUser(ctx context.Context, question, detail string) (bool, error) {
	reply := make(chan bool, 1)
	select {
	case m.inbox <- askMsg{question: question, detail: detail, reply: reply}:
	case <-ctx.Done():
		return false, ctx.Err()
	}
	select {
	case yes := <-reply:
		return yes, nil
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// nextAsk shows the next waiting question once no form is open: a
// task's first, then a form that waited for the open one to close.
func (m *Model) nextAsk() tea.Cmd {
	if m.form != nil {
		return nil
	}
	if len(m.asks) == 0 {
		if len(m.queued) == 0 {
			return nil
		}
		next := m.queued[0]
		m.queued = m.queued[1:]
		return next()
	}
	a := m.asks[0]
	m.asks = m.asks[1:]
	yes := false
	return m.openForm("A question", func() tea.Cmd {
		a.reply <- yes
		return nil
	}, func() { a.reply <- false },
		huh.NewGroup(huh.NewConfirm().Title(a.question).Description(a.detail).
			Affirmative("Yes").Negative("No").Value(&yes)))
}
