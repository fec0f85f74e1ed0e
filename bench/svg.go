package main

import (
	"fmt"
	"math"
	"strings"
)

// series is one line of a chart panel.
type series struct {
	name  string
	color string
	x, y  []float64 // x in minutes
}

type panel struct {
	title string
	unit  string
	lines []series
}

// slope is the least-squares slope of y over x (per x unit), and the fit's
// intercept.
func slope(x, y []float64) (m, c float64) {
	n := float64(len(x))
	if len(x) < 2 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for i := range x {
		sx += x[i]
		sy += y[i]
		sxx += x[i] * x[i]
		sxy += x[i] * y[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, sy / n
	}
	m = (n*sxy - sx*sy) / d
	return m, (sy - m*sx) / n
}

// chartSVG draws the panels one above the other, with each series' least
// squares line dashed and its slope in the legend.
func chartSVG(title string, panels []panel) string {
	const (
		w, ph     = 960.0, 220.0
		left, top = 70.0, 40.0
		right     = 20.0
		gap       = 50.0
	)
	h := top + float64(len(panels))*(ph+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, esc(title))
	pw := w - left - right
	for pi, p := range panels {
		y0 := top + float64(pi)*(ph+gap) + 20
		xmax, ymin, ymax := 0.0, math.Inf(1), math.Inf(-1)
		for _, s := range p.lines {
			for i := range s.x {
				xmax = math.Max(xmax, s.x[i])
				ymin = math.Min(ymin, s.y[i])
				ymax = math.Max(ymax, s.y[i])
			}
		}
		if math.IsInf(ymin, 0) {
			ymin, ymax = 0, 1
		}
		ymin = math.Min(0, ymin)
		if ymax <= ymin {
			ymax = ymin + 1
		}
		ymax *= 1.1
		if xmax <= 0 {
			xmax = 1
		}
		px := func(x float64) float64 { return left + x/xmax*pw }
		py := func(y float64) float64 { return y0 + ph - (y-ymin)/(ymax-ymin)*ph }
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" font-weight="bold">%s (%s)</text>`+"\n", left, y0-6, esc(p.title), esc(p.unit))
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#999"/>`+"\n", left, y0, pw, ph)
		for i := 0; i <= 4; i++ {
			v := ymin + (ymax-ymin)*float64(i)/4
			y := py(v)
			fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, left+pw, y, y)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, num(v))
		}
		for i := 0; i <= 6; i++ {
			v := xmax * float64(i) / 6
			fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%.1f min</text>`+"\n", px(v), y0+ph+15, v)
		}
		for si, s := range p.lines {
			if len(s.x) == 0 {
				continue
			}
			var pts []string
			for i := range s.x {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(s.x[i]), py(s.y[i])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
			m, c := slope(s.x, s.y)
			x1 := s.x[len(s.x)-1]
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-dasharray="4 3" opacity="0.7"/>`+"\n",
				px(s.x[0]), py(m*s.x[0]+c), px(x1), py(m*x1+c), s.color)
			lx := left + 10 + float64(si)*300
			fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/>`+"\n", lx, y0+8, s.color)
			fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s: slope %s %s/min</text>`+"\n", lx+14, y0+17, esc(s.name), signed(m), esc(p.unit))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func signed(v float64) string { return fmt.Sprintf("%+.3g", v) }

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
