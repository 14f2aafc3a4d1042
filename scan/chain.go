package scan

import "slices"

// verify checks part pi of signature sig (number id) around an anchor at
// position i of v's buffer, and for a signature of several parts records
// or completes a chain of part matches.
func (st *state) verify(v *view, sig *bodySig, id int32, pi int, i int) {
	p := &sig.parts[pi]
	b := v.buf[:v.n]
	if sig.multi < 0 {
		for _, pre := range p.prefixes {
			start := i - pre
			if start < 0 || sig.offset >= 0 && v.base+int64(start) != sig.offset {
				continue
			}
			if matchElems(b, start, p.elems, nil) {
				st.report(sig, id)
				return
			}
		}
		return
	}
	c := v.chain(sig.multi, len(sig.parts))
	last := pi == len(sig.parts)-1
	for _, pre := range p.prefixes {
		start := i - pre
		if start < 0 {
			continue
		}
		abs := v.base + int64(start)
		if pi == 0 {
			if sig.offset >= 0 && abs != sig.offset {
				continue
			}
		} else if !c.linked(pi-1, abs, p.gapMin, p.gapMax) {
			continue
		}
		if last {
			if matchElems(b, start, p.elems, nil) {
				st.report(sig, id)
				return
			}
			continue
		}
		st.ends = st.ends[:0]
		if !matchElems(b, start, p.elems, &st.ends) {
			continue
		}
		gapMax := sig.parts[pi+1].gapMax
		cutoff := v.base + int64(i) - int64(st.s.maxBack) - int64(gapMax)
		for _, e := range st.ends {
			c.add(pi, v.base+int64(e), gapMax, cutoff)
		}
	}
}

// chain returns the chain state of multi-part signature k with n parts,
// cleared if it is left over from an earlier scan. The state of a part
// list is allocated when a file first gets that far, then reused.
func (v *view) chain(k, n int) *chain {
	c := &v.chains[k]
	if v.chainGen[k] != v.gen {
		v.chainGen[k] = v.gen
		if c.minEnd == nil {
			c.minEnd = make([]int64, n-1)
			c.ends = make([][]int64, n-1)
		}
		for j := range c.minEnd {
			c.minEnd[j] = -1
			c.ends[j] = c.ends[j][:0]
		}
	}
	return c
}

// linked reports whether a chained match of part j ends where part j+1,
// starting at start, can follow it across a gap of gapMin to gapMax bytes.
func (c *chain) linked(j int, start int64, gapMin, gapMax int) bool {
	if gapMax == unbounded {
		return c.minEnd[j] >= 0 && c.minEnd[j]+int64(gapMin) <= start
	}
	for _, e := range c.ends[j] {
		if d := start - e; d >= int64(gapMin) && d <= int64(gapMax) {
			return true
		}
	}
	return false
}

// add records a chained match of part j ending at end. Ends before cutoff
// are too far back for any later part to reach and are dropped.
func (c *chain) add(j int, end int64, gapMax int, cutoff int64) {
	if gapMax == unbounded {
		if c.minEnd[j] < 0 || end < c.minEnd[j] {
			c.minEnd[j] = end
		}
		return
	}
	es := c.ends[j]
	if n := len(es); n > 0 && es[n-1] == end {
		return
	}
	if len(es) >= 64 && len(es) == cap(es) {
		es = slices.DeleteFunc(es, func(e int64) bool { return e < cutoff })
	}
	c.ends[j] = append(es, end)
}
