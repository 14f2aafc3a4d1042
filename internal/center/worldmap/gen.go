//go:build ignore

// gen derives countries.json from the npm packages world-atlas (Natural
// Earth's Admin 0 countries, 1:110m, as TopoJSON) and i18n-iso-countries
// (ISO 3166-1 numeric to alpha-2), at pinned versions whose tarballs it
// checks against pinned sha512 digests. It fetches them with the npm
// client (npm pack) and needs nothing else:
//
//	go generate ./internal/center/worldmap
//
// The output is the same bytes every time for the same packages.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/vitrine-dev/vitrine/residency"
)

// The packages, pinned: their npm dist.integrity.
var packages = map[string]string{
	"world-atlas@2.0.2":         "sha512-IXfV0qwlKXpckz1FhwXVwKRjiIhOnWttOskm5CtxMsjgE/MXAYRHWJqgXOpM8IkcPBoXnyTU5lFHcYa5ChG0LQ==",
	"i18n-iso-countries@7.14.0": "sha512-nXHJZYtNrfsi1UQbyRqm3Gou431elgLjKl//CYlnBGt5aTWdRPH1PiS2T/p/n8Q8LnqYqzQJik3Q7mkwvLokeg==",
}

// Width is the map's width in its units. The map runs from North (the
// northernmost land) to South: south of it is only Antarctica, which
// would take a fifth of the height.
const (
	Width = 1000
	North = 84.0
	South = -58.0
)

type topology struct {
	Transform struct {
		Scale     [2]float64 `json:"scale"`
		Translate [2]float64 `json:"translate"`
	} `json:"transform"`
	Arcs    [][][2]int `json:"arcs"`
	Objects struct {
		Countries struct {
			Geometries []struct {
				Type       string                `json:"type"`
				ID         string                `json:"id"`
				Properties struct{ Name string } `json:"properties"`
				Arcs       json.RawMessage       `json:"arcs"`
			} `json:"geometries"`
		} `json:"countries"`
	} `json:"objects"`
}

// Shape is one country's outline as an SVG path.
type Shape struct {
	Code string `json:"code,omitempty"` // ISO 3166-1 alpha-2; empty for a territory without one
	Name string `json:"name"`           // Natural Earth's
	D    string `json:"d"`
}

// Map is countries.json.
type Map struct {
	Source string  `json:"source"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Shapes []Shape `json:"shapes"`
}

func main() {
	log.SetFlags(0)
	dir, err := os.MkdirTemp("", "worldmap")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	files := map[string][]byte{}
	for _, spec := range slices.Sorted(func(yield func(string) bool) {
		for k := range packages {
			if !yield(k) {
				return
			}
		}
	}) {
		cmd := exec.Command("npm", "pack", "--silent", "--pack-destination", dir, spec)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			log.Fatalf("npm pack %s: %v", spec, err)
		}
		tgz, err := os.ReadFile(filepath.Join(dir, strings.TrimSpace(string(out))))
		if err != nil {
			log.Fatal(err)
		}
		sum := sha512.Sum512(tgz)
		if got := "sha512-" + base64.StdEncoding.EncodeToString(sum[:]); got != packages[spec] {
			log.Fatalf("%s: the tarball's digest is %s, pinned %s", spec, got, packages[spec])
		}
		name, _, _ := strings.Cut(spec, "@")
		if err := untar(tgz, name, files); err != nil {
			log.Fatalf("%s: %v", spec, err)
		}
	}
	var topo topology
	if err := json.Unmarshal(files["world-atlas/countries-110m.json"], &topo); err != nil {
		log.Fatal(err)
	}
	var codes [][]string
	if err := json.Unmarshal(files["i18n-iso-countries/codes.json"], &codes); err != nil {
		log.Fatal(err)
	}
	alpha2 := map[string]string{}
	for _, c := range codes {
		alpha2[c[2]] = c[0]
	}
	known := map[string]bool{}
	for _, c := range residency.AllCountries() {
		known[c] = true
	}

	// The arcs, decoded (delta-encoded, quantized), in degrees.
	arcs := make([][]point, len(topo.Arcs))
	for i, arc := range topo.Arcs {
		var x, y int
		for _, d := range arc {
			x, y = x+d[0], y+d[1]
			arcs[i] = append(arcs[i], point{float64(x)*topo.Transform.Scale[0] + topo.Transform.Translate[0], float64(y)*topo.Transform.Scale[1] + topo.Transform.Translate[1]})
		}
	}
	_, top := project(0, North)
	_, bottom := project(0, South)
	m := Map{Source: "world-atlas 2.0.2 countries-110m.json (Natural Earth 4.1.0, public domain); ISO 3166-1 numeric to alpha-2 from i18n-iso-countries 7.14.0",
		Width: Width, Height: int(math.Ceil(bottom - top))}
	if m.Height <= 0 {
		log.Fatal("no height")
	}
	byCode := map[string]int{}
	for _, g := range topo.Objects.Countries.Geometries {
		var polys [][][]int
		switch g.Type {
		case "Polygon":
			var rings [][]int
			if err := json.Unmarshal(g.Arcs, &rings); err != nil {
				log.Fatal(err)
			}
			polys = [][][]int{rings}
		case "MultiPolygon":
			if err := json.Unmarshal(g.Arcs, &polys); err != nil {
				log.Fatal(err)
			}
		default:
			log.Fatalf("%s: a %s", g.Properties.Name, g.Type)
		}
		var d strings.Builder
		for _, rings := range polys {
			for _, ring := range rings {
				for _, piece := range antimeridian(ringOf(ring, arcs)) {
					path(&d, piece, top)
				}
			}
		}
		if d.Len() == 0 {
			continue // all of it south of South
		}
		s := Shape{Name: g.Properties.Name, D: d.String()}
		if g.ID != "" {
			code, ok := alpha2[g.ID]
			if !ok || !known[code] {
				log.Fatalf("%s: numeric code %s is no ISO 3166-1 country (%q)", g.Properties.Name, g.ID, code)
			}
			if _, dup := byCode[code]; dup {
				log.Fatalf("%s: %s twice", g.Properties.Name, code)
			}
			s.Code = code
			byCode[code] = len(m.Shapes)
		}
		m.Shapes = append(m.Shapes, s)
	}
	slices.SortFunc(m.Shapes, func(a, b Shape) int { return strings.Compare(a.Code+" "+a.Name, b.Code+" "+b.Name) })
	out, err := json.MarshalIndent(&m, "", " ")
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile("countries.json", append(out, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	lic := "countries.json is derived from two npm packages.\n\n" +
		"Its shapes: world-atlas 2.0.2 (its LICENSE, below), a redistribution of Natural Earth's vector data,\n" +
		"version 4.1.0, which is in the public domain (https://www.naturalearthdata.com/about/terms-of-use/).\n\n" +
		string(files["world-atlas/LICENSE"]) + "\n" +
		"Its ISO 3166-1 alpha-2 codes, from the numeric ones: i18n-iso-countries 7.14.0 (its LICENSE, below).\n\n" +
		string(files["i18n-iso-countries/LICENSE"])
	if err := os.WriteFile("LICENSE", []byte(lic), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("countries.json: %d shapes (%d with an ISO code), %d bytes", len(m.Shapes), len(byCode), len(out))
}

// untar keeps the files of a package tarball that gen reads, as
// name/file.
func untar(tgz []byte, name string, into map[string][]byte) error {
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch h.Name {
		case "package/countries-110m.json", "package/codes.json", "package/LICENSE":
			b, err := io.ReadAll(tr)
			if err != nil {
				return err
			}
			into[name+"/"+strings.TrimPrefix(h.Name, "package/")] = b
		}
	}
}

type point struct{ lon, lat float64 }

// ringOf joins a ring's arcs (an arc's last point is the next one's
// first; a negative index is the arc reversed).
func ringOf(ring []int, arcs [][]point) []point {
	var pts []point
	for _, a := range ring {
		var seg []point
		if a < 0 {
			seg = slices.Clone(arcs[^a])
			slices.Reverse(seg)
		} else {
			seg = arcs[a]
		}
		if len(pts) > 0 {
			seg = seg[1:]
		}
		pts = append(pts, seg...)
	}
	return pts
}

// antimeridian returns the ring as pieces that do not cross the
// antimeridian: a ring that does (Russia's Chukotka, Fiji) is made
// continuous across it, then clipped to each side, the part beyond 180°
// brought back by 360°.
func antimeridian(ring []point) [][]point {
	unwrapped := slices.Clone(ring)
	crosses := false
	for i := 1; i < len(unwrapped); i++ {
		switch d := unwrapped[i].lon - unwrapped[i-1].lon; {
		case d > 180:
			unwrapped[i].lon -= 360 * math.Round(d/360)
		case d < -180:
			unwrapped[i].lon += 360 * math.Round(-d/360)
		}
		if unwrapped[i].lon > 180 || unwrapped[i].lon < -180 {
			crosses = true
		}
	}
	if !crosses {
		return [][]point{ring}
	}
	var pieces [][]point
	for _, shift := range []float64{-360, 0, 360} {
		r := make([]point, len(unwrapped))
		for i, p := range unwrapped {
			r[i] = point{p.lon + shift, p.lat}
		}
		r = clip(clip(r, 180, 1), -180, -1)
		if len(r) >= 3 {
			pieces = append(pieces, r)
		}
	}
	return pieces
}

// clip keeps the part of a closed ring on the inside of the meridian at
// lon: west of it for side 1, east of it for side -1 (Sutherland and
// Hodgman's algorithm for one edge).
func clip(ring []point, lon float64, side float64) []point {
	inside := func(p point) bool { return side*(lon-p.lon) >= 0 }
	cross := func(a, b point) point {
		t := (lon - a.lon) / (b.lon - a.lon)
		return point{lon, a.lat + t*(b.lat-a.lat)}
	}
	var out []point
	for i, cur := range ring {
		prev := ring[(i+len(ring)-1)%len(ring)]
		switch {
		case inside(cur) && !inside(prev):
			out = append(out, cross(prev, cur), cur)
		case inside(cur):
			out = append(out, cur)
		case inside(prev):
			out = append(out, cross(prev, cur))
		}
	}
	return out
}

// path writes one ring as an SVG subpath, projected, in relative
// coordinates of whole units from the map's top (at y top), points that
// round to the one before left out; a ring wholly south of South, or that
// rounds to less than a triangle, is left out.
func path(d *strings.Builder, ring []point, top float64) {
	var kept [][2]int
	south := true
	for _, p := range ring {
		if p.lat > South {
			south = false
		}
		x, y := project(p.lon, p.lat)
		q := [2]int{int(math.Round(x)), int(math.Round(y - top))}
		if len(kept) > 0 && kept[len(kept)-1] == q {
			continue
		}
		kept = append(kept, q)
	}
	if len(kept) > 1 && kept[0] == kept[len(kept)-1] {
		kept = kept[:len(kept)-1]
	}
	if south || len(kept) < 3 {
		return
	}
	fmt.Fprintf(d, "M%d %d", kept[0][0], kept[0][1])
	d.WriteString("l")
	for i := 1; i < len(kept); i++ {
		dx, dy := kept[i][0]-kept[i-1][0], kept[i][1]-kept[i-1][1]
		if i > 1 && dx >= 0 {
			d.WriteByte(' ')
		}
		d.WriteString(strconv.Itoa(dx))
		if dy >= 0 {
			d.WriteByte(' ')
		}
		d.WriteString(strconv.Itoa(dy))
	}
	d.WriteString("z")
}

// project is the Natural Earth projection (Šavrič, Jenny, Patterson,
// Petrovič and Hurni, 2011), scaled to Width, y growing southwards.
func project(lon, lat float64) (x, y float64) {
	l, p := lon*math.Pi/180, lat*math.Pi/180
	p2 := p * p
	p4 := p2 * p2
	x = l * (0.8707 - 0.131979*p2 + p4*(-0.013791+p4*(0.003971*p2-0.001529*p4)))
	y = p * (1.007226 + p2*(0.015085+p4*(-0.044475+0.028874*p2-0.005916*p4)))
	s := Width / (2 * 0.8707 * math.Pi)
	return (x + 0.8707*math.Pi) * s, -y * s
}
