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
		next := &sig.parts[pi+1]
		floor := v.base + int64(i) - int64(st.s.maxBack) - int64(next.gapMin)
		for _, e := range st.ends {
			c.add(pi, v.base+int64(e), next.gapMax, floor)
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
// The ends are sorted, so this is a binary search for the last end that
// leaves at least gapMin bytes.
func (c *chain) linked(j int, start int64, gapMin, gapMax int) bool {
	if gapMax == unbounded {
		return c.minEnd[j] >= 0 && c.minEnd[j]+int64(gapMin) <= start
	}
	es := c.ends[j]
	k, _ := slices.BinarySearch(es, start-int64(gapMin)+1)
	return k > 0 && start-es[k-1] <= int64(gapMax)
}

// add records a chained match of part j ending at end. floor is the
// smallest start-gapMin any later query can ask about: of the ends at or
// below it only the largest can still answer a query, so the others are
// dropped, which keeps the list to the ends near the scan position.
func (c *chain) add(j int, end int64, gapMax int, floor int64) {
	if gapMax == unbounded {
		if c.minEnd[j] < 0 || end < c.minEnd[j] {
			c.minEnd[j] = end
		}
		return
	}
	es := c.ends[j]
	k, found := slices.BinarySearch(es, end)
	if found {
		return
	}
	es = slices.Insert(es, k, end)
	if len(es) >= 64 {
		if d, _ := slices.BinarySearch(es, floor+1); d > 1 {
			es = slices.Delete(es, 0, d-1)
		}
	}
	c.ends[j] = es
}
