package tui

import (
	"image/color"

	"charm.land/lipgloss/v2"
)

// styles are built once per background (dark or light) and passed down.
type styles struct {
	dark bool

	title, dim, bold, header, selected, tabOn, tabOff lipgloss.Style
	ok, warn, bad, info                               lipgloss.Style
	errBox, modal, footerKey, footerDesc              lipgloss.Style
	accent                                            color.Color
}

func newStyles(dark bool) styles {
	ld := lipgloss.LightDark(dark)
	fg := ld(lipgloss.Color("#1a1a1a"), lipgloss.Color("#e6e6e6"))
	dim := ld(lipgloss.Color("#6b6b6b"), lipgloss.Color("#8a8a8a"))
	accent := ld(lipgloss.Color("#8a5a00"), lipgloss.Color("#f5c542")) // butter
	selBg := ld(lipgloss.Color("#f3e3b5"), lipgloss.Color("#4a3f1c"))
	green := ld(lipgloss.Color("#1d7a2e"), lipgloss.Color("#5fd068"))
	yellow := ld(lipgloss.Color("#9a6700"), lipgloss.Color("#e5c07b"))
	red := ld(lipgloss.Color("#b3261e"), lipgloss.Color("#ff6b6b"))
	blue := ld(lipgloss.Color("#1f5fbf"), lipgloss.Color("#7aa2f7"))
	return styles{
		dark:       dark,
		title:      lipgloss.NewStyle().Bold(true).Foreground(accent),
		dim:        lipgloss.NewStyle().Foreground(dim),
		bold:       lipgloss.NewStyle().Bold(true).Foreground(fg),
		header:     lipgloss.NewStyle().Bold(true).Foreground(dim),
		selected:   lipgloss.NewStyle().Background(selBg).Foreground(fg).Bold(true),
		tabOn:      lipgloss.NewStyle().Bold(true).Foreground(accent),
		tabOff:     lipgloss.NewStyle().Foreground(dim),
		ok:         lipgloss.NewStyle().Foreground(green),
		warn:       lipgloss.NewStyle().Foreground(yellow),
		bad:        lipgloss.NewStyle().Foreground(red).Bold(true),
		info:       lipgloss.NewStyle().Foreground(blue),
		errBox:     lipgloss.NewStyle().Foreground(red),
		modal:      lipgloss.NewStyle().Border(lipgloss.RoundedBorder()).BorderForeground(accent).Padding(0, 1),
		footerKey:  lipgloss.NewStyle().Bold(true).Foreground(accent),
		footerDesc: lipgloss.NewStyle().Foreground(dim),
		accent:     accent,
	}
}

// state colours a status word.
func (s styles) state(word string) lipgloss.Style {
	switch word {
	case "online", "running", "ok":
		return s.ok
	case "degraded", "paused", "starting", "connecting", "stale", "pending":
		return s.warn
	case "syncing":
		return s.info
	case "offline", "crashed", "unknown", "down", "error":
		return s.bad
	}
	return s.dim
}
