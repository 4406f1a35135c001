package bench

import (
	"bytes"
	"image"
	"image/png"
	"math"
	"testing"
)

func TestNiceCeil(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{0, 1},
		{-3, 1},
		{math.NaN(), 1},
		{1, 1},
		{1.1, 2},
		{3, 5},
		{7, 10},
		{999, 1000},
		{12_345, 20_000},
		{0.03, 0.05},
	}
	for _, tt := range tests {
		if got := niceCeil(tt.in); math.Abs(got-tt.want) > 1e-9*tt.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPlotRendersSeries(t *testing.T) {
	p := &Plot{
		Title: "test", XLabel: "connections", YLabel: "rate", LogX: true,
		Series: []Series{
			{Name: "a", X: []float64{100, 1000, 10000}, Y: []float64{3, 2, 1}},
			{Name: "b", X: []float64{100, 1000}, Y: []float64{math.NaN(), 4}},
		},
		Width: 400, Height: 300,
	}
	var buf bytes.Buffer
	if err := p.WritePNG(&buf); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatalf("decoding the PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 400 || b.Dy() != 300 {
		t.Errorf("image is %v, want 400x300", b)
	}
	// Both series and their legend entries are drawn in their colors.
	for i := range p.Series {
		want := plotPalette[i]
		found := false
		for y := 0; y < 300 && !found; y++ {
			for x := 0; x < 400; x++ {
				r, g, b, _ := img.At(x, y).RGBA()
				if uint8(r>>8) == want.R && uint8(g>>8) == want.G && uint8(b>>8) == want.B {
					found = true
					break
				}
			}
		}
		if !found {
			t.Errorf("series %q is not drawn", p.Series[i].Name)
		}
	}
}

func TestPlotLogYSkipsNonPositive(t *testing.T) {
	p := &Plot{
		Title: "log", LogY: true, Width: 200, Height: 150,
		Series: []Series{{Name: "a", X: []float64{1, 2, 3}, Y: []float64{0, 0.5, 2000}}},
	}
	xs, ys := p.points()
	if len(xs) != 2 || ys[0] != 0.5 {
		t.Errorf("points = %v, %v; want the two positive ones", xs, ys)
	}
	if _, ticks := p.yScale(ys, image.Rect(0, 0, 100, 100)); len(ticks) != 6 || ticks[0] != 0.1 || ticks[5] != 10000 {
		t.Errorf("log ticks = %v, want 0.1 to 10000", ticks)
	}
	if _, err := p.Render(); err != nil {
		t.Errorf("Render: %v", err)
	}
}

func TestPlotWithoutPointsFails(t *testing.T) {
	p := &Plot{Title: "empty", Series: []Series{{Name: "a", X: []float64{1}, Y: []float64{math.NaN()}}}}
	if _, err := p.Render(); err == nil {
		t.Error("Render of a plot without points succeeded")
	}
}
