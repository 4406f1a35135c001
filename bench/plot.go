package bench

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"
	"slices"
	"time"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Plot is a line plot of a few series, rendered to PNG without any
// plotting library: axes with tick labels, one colored polyline with
// markers per series, and a legend.
type Plot struct {
	Title  string
	XLabel string
	YLabel string
	// LogX spaces the x axis logarithmically and puts a tick at every x
	// value of the data, which suits connection counts.
	LogX bool
	// LogY spaces the y axis logarithmically with a tick per power of ten,
	// for values that span orders of magnitude such as latencies. Points
	// with Y <= 0 are left out.
	LogY   bool
	Series []Series
	// Width and Height are in pixels; zero means 800 by 480.
	Width, Height int
}

// Series is one line of a Plot. X and Y have the same length; points whose
// Y is NaN are left out.
type Series struct {
	Name string
	X, Y []float64
}

var (
	plotPalette = []color.RGBA{
		{0x1f, 0x77, 0xb4, 0xff}, // blue
		{0xd6, 0x27, 0x28, 0xff}, // red
		{0x2c, 0xa0, 0x2c, 0xff}, // green
		{0xff, 0x7f, 0x0e, 0xff}, // orange
		{0x94, 0x67, 0xbd, 0xff}, // purple
		{0x8c, 0x56, 0x4b, 0xff}, // brown
	}
	plotInk  = color.RGBA{0x20, 0x20, 0x20, 0xff}
	plotGrid = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// plot margins around the plotting area, in pixels.
const (
	marginLeft   = 70
	marginRight  = 20
	marginTop    = 40
	marginBottom = 50
)

// WritePNG renders p and encodes it as PNG.
func (p *Plot) WritePNG(w io.Writer) error {
	img, err := p.Render()
	if err != nil {
		return err
	}
	return png.Encode(w, img)
}

// Render draws p. It fails when no series has a point to draw.
func (p *Plot) Render() (*image.RGBA, error) {
	width, height := p.Width, p.Height
	if width == 0 {
		width = 800
	}
	if height == 0 {
		height = 480
	}
	xs, ys := p.points()
	if len(xs) == 0 {
		return nil, fmt.Errorf("bench: plot %q has no points", p.Title)
	}
	sy, yTicks := p.yScale(ys, image.Rect(marginLeft, marginTop, width-marginRight, height-marginBottom))
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fillRect(img, img.Bounds(), color.RGBA{0xff, 0xff, 0xff, 0xff})

	area := image.Rect(marginLeft, marginTop, width-marginRight, height-marginBottom)
	sx := p.xScale(xs, area)

	// Grid and tick labels.
	for _, t := range p.xTicks(xs) {
		x := sx(t)
		line(img, x, area.Min.Y, x, area.Max.Y, plotGrid)
		label := si(t)
		drawText(img, x-textWidth(label)/2, area.Max.Y+16, label)
	}
	for _, v := range yTicks {
		y := sy(v)
		line(img, area.Min.X, y, area.Max.X, y, plotGrid)
		label := si(v)
		drawText(img, area.Min.X-8-textWidth(label), y+4, label)
	}
	line(img, area.Min.X, area.Max.Y, area.Max.X, area.Max.Y, plotInk)
	line(img, area.Min.X, area.Min.Y, area.Min.X, area.Max.Y, plotInk)
	drawText(img, (width-textWidth(p.Title))/2, 22, p.Title)
	drawText(img, (area.Min.X+area.Max.X-textWidth(p.XLabel))/2, height-12, p.XLabel)
	drawText(img, 8, area.Min.Y-8, p.YLabel)

	// Series, then the legend in the upper left of the plotting area.
	legendY := area.Min.Y + 16
	for i, s := range p.Series {
		c := plotPalette[i%len(plotPalette)]
		px, py := -1, -1
		drawn := false
		for j := range s.X {
			if !p.drawable(s.X[j], s.Y[j]) {
				continue
			}
			x, y := sx(s.X[j]), sy(s.Y[j])
			if px >= 0 {
				thickLine(img, px, py, x, y, c)
			}
			fillRect(img, image.Rect(x-3, y-3, x+4, y+4), c)
			px, py, drawn = x, y, true
		}
		if !drawn {
			continue
		}
		thickLine(img, area.Min.X+10, legendY-4, area.Min.X+34, legendY-4, c)
		drawText(img, area.Min.X+40, legendY, s.Name)
		legendY += 16
	}
	return img, nil
}

// points returns every drawable x and y value.
func (p *Plot) points() (xs, ys []float64) {
	for _, s := range p.Series {
		for j := range s.X {
			if !p.drawable(s.X[j], s.Y[j]) {
				continue
			}
			xs = append(xs, s.X[j])
			ys = append(ys, s.Y[j])
		}
	}
	return xs, ys
}

// drawable reports whether the point (x, y) can be drawn on p's axes.
func (p *Plot) drawable(x, y float64) bool {
	return !math.IsNaN(y) && (!p.LogX || x > 0) && (!p.LogY || y > 0)
}

// yScale maps y values to pixel rows of area and returns the y ticks: from
// 0 to a round maximum in five steps, or one per power of ten on a log
// axis.
func (p *Plot) yScale(ys []float64, area image.Rectangle) (func(float64) int, []float64) {
	if !p.LogY {
		ymax := niceCeil(slices.Max(ys))
		var ticks []float64
		for i := 0; i <= 5; i++ {
			ticks = append(ticks, ymax*float64(i)/5)
		}
		return func(v float64) int {
			return area.Max.Y - int(math.Round(v/ymax*float64(area.Dy())))
		}, ticks
	}
	lo := math.Floor(math.Log10(slices.Min(ys)))
	hi := math.Ceil(math.Log10(slices.Max(ys)))
	if hi == lo {
		hi++
	}
	var ticks []float64
	for e := lo; e <= hi; e++ {
		ticks = append(ticks, math.Pow(10, e))
	}
	return func(v float64) int {
		return area.Max.Y - int(math.Round((math.Log10(v)-lo)/(hi-lo)*float64(area.Dy())))
	}, ticks
}

// xScale maps x values to pixel columns of area.
func (p *Plot) xScale(xs []float64, area image.Rectangle) func(float64) int {
	lo, hi := slices.Min(xs), slices.Max(xs)
	f := func(v float64) float64 { return v }
	if p.LogX {
		f = math.Log10
	} else {
		lo = 0
	}
	flo, fhi := f(lo), f(hi)
	if fhi == flo {
		flo, fhi = flo-1, fhi+1
	}
	// Keep the outermost points off the axes.
	pad := (fhi - flo) * 0.05
	flo, fhi = flo-pad, fhi+pad
	return func(v float64) int {
		return area.Min.X + int(math.Round((f(v)-flo)/(fhi-flo)*float64(area.Dx())))
	}
}

// xTicks returns the x values to label: every distinct value on a log
// axis, five even steps on a linear one.
func (p *Plot) xTicks(xs []float64) []float64 {
	if p.LogX {
		ticks := slices.Clone(xs)
		slices.Sort(ticks)
		return slices.Compact(ticks)
	}
	hi := niceCeil(slices.Max(xs))
	var ticks []float64
	for i := 0; i <= 5; i++ {
		ticks = append(ticks, hi*float64(i)/5)
	}
	return ticks
}

// niceCeil returns the smallest of 1, 2 or 5 times a power of ten that is
// at least v (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	exp := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*exp >= v {
			return m * exp
		}
	}
	return 10 * exp
}

func fillRect(img *image.RGBA, r image.Rectangle, c color.RGBA) {
	r = r.Intersect(img.Bounds())
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			img.SetRGBA(x, y, c)
		}
	}
}

// line draws a one-pixel line with Bresenham's algorithm.
func line(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	dx, dy := abs(x1-x0), -abs(y1-y0)
	stepX, stepY := 1, 1
	if x0 > x1 {
		stepX = -1
	}
	if y0 > y1 {
		stepY = -1
	}
	e := dx + dy
	for {
		if image.Pt(x0, y0).In(img.Bounds()) {
			img.SetRGBA(x0, y0, c)
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		if e2 := 2 * e; e2 >= dy {
			e += dy
			x0 += stepX
		} else {
			e += dx
			y0 += stepY
		}
	}
}

// thickLine draws a line two pixels wide.
func thickLine(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	line(img, x0, y0, x1, y1, c)
	if abs(x1-x0) > abs(y1-y0) {
		line(img, x0, y0+1, x1, y1+1, c)
	} else {
		line(img, x0+1, y0, x1+1, y1, c)
	}
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// drawText draws s with its baseline at y.
func drawText(img *image.RGBA, x, y int, s string) {
	d := font.Drawer{
		Dst:  img,
		Src:  image.NewUniform(plotInk),
		Face: basicfont.Face7x13,
		Dot:  fixed.P(x, y),
	}
	d.DrawString(s)
}

func textWidth(s string) int {
	return font.MeasureString(basicfont.Face7x13, s).Round()
}

// throughputPlot plots delivered messages per second against connections
// for every contender of the unfiltered sweep.
func (res *Results) throughputPlot() *Plot {
	return res.sweepPlot("Fanout: delivered messages/s (all subscribers)", "delivered/s",
		func(f FanoutResult) float64 { return f.Delivered })
}

// latencyPlot plots p99 latency at the offered rate against connections.
func (res *Results) latencyPlot() *Plot {
	p := res.sweepPlot("Fanout: p99 latency at a tenth of the raw limit's message rate (log scale)", "p99 ms",
		func(f FanoutResult) float64 {
			if f.P99 == 0 {
				return math.NaN()
			}
			return float64(f.P99) / float64(time.Millisecond)
		})
	if p != nil {
		p.LogY = true
	}
	return p
}

func (res *Results) sweepPlot(title, ylabel string, value func(FanoutResult) float64) *Plot {
	p := &Plot{Title: title, XLabel: "connections", YLabel: ylabel, LogX: true}
	for _, c := range contenders {
		s := Series{Name: c.label}
		for _, f := range res.Fanout {
			if f.Contender != c.name || f.FrameSize != minFrameSize || f.NotAvailable != "" {
				continue
			}
			s.X = append(s.X, float64(f.Conns))
			s.Y = append(s.Y, value(f))
		}
		if len(s.X) > 0 {
			p.Series = append(p.Series, s)
		}
	}
	if len(p.Series) == 0 {
		return nil
	}
	return p
}

// slowMemoryPlot plots the server RSS over the run with stalled
// subscribers.
func (res *Results) slowMemoryPlot() *Plot {
	p := &Plot{Title: "Slow consumers: server RSS while 10% of subscribers stall", XLabel: "seconds", YLabel: "RSS MiB"}
	for _, s := range res.Slow {
		if len(s.Mem) == 0 {
			continue
		}
		series := Series{Name: contenderLabel(s.Contender)}
		for _, m := range s.Mem {
			series.X = append(series.X, m.At.Seconds())
			series.Y = append(series.Y, float64(m.RSS)/(1<<20))
		}
		p.Series = append(p.Series, series)
	}
	if len(p.Series) == 0 {
		return nil
	}
	return p
}
