package console

import (
	"fmt"
	"html/template"
	"strings"
)

// bar is one bar of a chart.
type bar struct {
	Label string
	Value float64
	Text  string
	Href  string
}

// chart is a server-rendered SVG: no script, no chart service, colours from the
// stylesheet (classes), so dark and light follow the system setting.
type chart struct {
	Title string
	SVG   template.HTML
	Empty bool
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// barChart draws horizontal bars with labels, one row per bar.
func barChart(title string, bars []bar) chart {
	if len(bars) == 0 {
		return chart{Title: title, Empty: true}
	}
	const rowH, labelW, barW, textW = 26, 200, 260, 90
	peak := 0.0
	for _, b := range bars {
		peak = max(peak, b.Value)
	}
	var sb strings.Builder
	h := rowH * len(bars)
	fmt.Fprintf(&sb, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="100%%" preserveAspectRatio="xMinYMin meet">`, esc(title), labelW+barW+textW, h)
	for i, b := range bars {
		y := i * rowH
		w := 1.0
		if peak > 0 {
			w = max(1, b.Value/peak*barW)
		}
		label := b.Label
		if len(label) > 28 {
			label = label[:27] + "…"
		}
		if b.Href != "" {
			fmt.Fprintf(&sb, `<a href="%s">`, esc(b.Href))
		}
		fmt.Fprintf(&sb, `<title>%s: %s</title><text class="label" x="0" y="%d">%s</text><rect class="bar" x="%d" y="%d" width="%.1f" height="%d" rx="3"/><text class="value" x="%.1f" y="%d">%s</text>`,
			esc(b.Label), esc(b.Text), y+17, esc(label), labelW, y+5, w, rowH-10, float64(labelW)+w+6, y+17, esc(b.Text))
		if b.Href != "" {
			sb.WriteString(`</a>`)
		}
	}
	sb.WriteString(`</svg>`)
	return chart{Title: title, SVG: template.HTML(sb.String())}
}

// columnChart draws vertical columns (a time series), labelling every sixth.
func columnChart(title string, bars []bar) chart {
	const colW, plotH, labelH = 22, 120, 20
	peak, total := 0.0, 0.0
	for _, b := range bars {
		peak = max(peak, b.Value)
		total += b.Value
	}
	if total == 0 {
		return chart{Title: title, Empty: true}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %d %d" width="100%%" preserveAspectRatio="xMinYMin meet">`, esc(title), colW*len(bars), plotH+labelH)
	fmt.Fprintf(&sb, `<line class="axis" x1="0" y1="%d" x2="%d" y2="%d"/>`, plotH, colW*len(bars), plotH)
	for i, b := range bars {
		h := 0.0
		if peak > 0 {
			h = b.Value / peak * (plotH - 10)
		}
		x := i * colW
		fmt.Fprintf(&sb, `<g><title>%s: %s</title><rect class="bar" x="%d" y="%.1f" width="%d" height="%.1f" rx="2"/></g>`,
			esc(b.Label), esc(b.Text), x+3, plotH-h, colW-6, h)
		if i%6 == 0 {
			fmt.Fprintf(&sb, `<text class="label" x="%d" y="%d">%s</text>`, x, plotH+15, esc(b.Label))
		}
	}
	sb.WriteString(`</svg>`)
	return chart{Title: title, SVG: template.HTML(sb.String())}
}
