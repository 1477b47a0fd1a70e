package tui

import (
	"context"
	"sync"

	tea "charm.land/bubbletea/v2"

	"github.com/butter-cloud/butter/cloud"
)

// The watch's messages: a batch of the cloud's events, the end of the
// stream; gen tells a restarted watch's from an old one's.
type (
	eventsMsg struct {
		gen    int
		events []cloud.Event
	}
	watchEndedMsg struct{ gen int }
)

// startWatch (re)starts the stream of the cloud's events.
func (m *Model) startWatch() tea.Cmd {
	if m.stopWatch != nil {
		m.stopWatch()
	}
	m.gen++
	gen, cl, every := m.gen, m.cl, m.opts.Interval
	ch := make(chan cloud.Event, 4096)
	stop := make(chan struct{})
	m.events = ch
	m.stopWatch = sync.OnceFunc(func() { close(stop) })
	start := m.run(func(ctx context.Context) tea.Msg {
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-stop:
			case <-wctx.Done():
			}
			cancel()
		}()
		go func() {
			defer close(ch)
			_ = cl.Watch(wctx, every, func(ev cloud.Event) {
				select {
				case ch <- ev:
				case <-wctx.Done():
				}
			})
		}()
		return nil
	})
	return tea.Batch(start, nextEvents(gen, ch))
}

// nextEvents waits for the next events and takes every one already
// waiting with it, so 2,000 VMs arriving at once are one update.
func nextEvents(gen int, ch <-chan cloud.Event) tea.Cmd {
	return func() tea.Msg {
		ev, ok := <-ch
		if !ok {
			return watchEndedMsg{gen}
		}
		batch := []cloud.Event{ev}
		for {
			select {
			case ev, ok := <-ch:
				if !ok {
					return eventsMsg{gen, batch}
				}
				batch = append(batch, ev)
			default:
				return eventsMsg{gen, batch}
			}
		}
	}
}

// inboxMsg is whatever a task sent: steps, progress, questions, results.
type inboxMsg struct{ msg tea.Msg }

// listenInbox waits for the next message from the tasks; Update re-arms
// it after each one.
func (m *Model) listenInbox() tea.Cmd {
	ch := m.inbox
	return func() tea.Msg { return inboxMsg{<-ch} }
}

// applyEvents takes a batch into the store and rebuilds what changed.
func (m *Model) applyEvents(evs []cloud.Event) {
	for _, ev := range evs {
		ch := m.data.apply(ev)
		for p := range ch {
			m.dirty[p] = m.dirty[p] || ch[p]
		}
	}
	m.rebuild()
}

func (m *Model) rebuild() {
	for p := range paneCount {
		if !m.dirty[p] {
			continue
		}
		m.dirty[p] = false
		m.tables[p].SetRows(paneDefs[p].rows(m.data))
	}
	m.arrange()
}
