// Package worldmap is the world's countries as SVG paths, for the
// Transparency Center's residency map.
//
// # Data
//
// countries.json is derived from Natural Earth's Admin 0 countries at
// 1:110m (version 4.1.0, public domain) as the npm package world-atlas
// 2.0.2 ships them, with ISO 3166-1 alpha-2 codes from the numeric ones by
// the npm package i18n-iso-countries 7.14.0 (LICENSE). `go generate`
// fetches both with npm at those versions, checks their tarballs against
// pinned sha512 digests, and derives the same bytes again (gen.go).
//
// # Projection
//
// Natural Earth (Šavrič et al., 2011), Width units wide, from 84°N to
// 58°S: Antarctica is left out. Coordinates are rounded to whole units,
// points that round to the one before dropped: about 49 kB for 176 shapes.
// At 1:110m tiny states (Andorra, Singapore, most islands) have no shape.
package worldmap

import (
	_ "embed"
	"encoding/json"
	"sync"
)

//go:generate go run gen.go

//go:embed countries.json
var countriesJSON []byte

// Shape is one country's outline.
type Shape struct {
	// Code is its ISO 3166-1 alpha-2 code; empty for a territory that
	// has none (Kosovo, Northern Cyprus, Somaliland in Natural Earth).
	Code string `json:"code,omitempty"`
	// Name is Natural Earth's name for it.
	Name string `json:"name"`
	// D is its outline as SVG path data, in the map's units.
	D string `json:"d"`
}

// Map is the world map: its size in its units and every shape, sorted by
// code (those without one first).
type Map struct {
	Source string  `json:"source"`
	Width  int     `json:"width"`
	Height int     `json:"height"`
	Shapes []Shape `json:"shapes"`
}

// World returns the map. It is shared: callers must not change it.
var World = sync.OnceValue(func() *Map {
	var m Map
	if err := json.Unmarshal(countriesJSON, &m); err != nil {
		panic("worldmap: countries.json: " + err.Error()) // embedded, checked by TestWorld
	}
	return &m
})
