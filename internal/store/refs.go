package store

// RefPager hands record refs to a RecordRefs callback in pages of a given
// size, reusing one array, as implementations of RecordRefs do.
type RefPager struct {
	page []RecordRef
	f    func(page []RecordRef) error
}

// NewRefPager returns a pager of pages of size refs (see CheckPageSize)
// for f.
func NewRefPager(size int, f func(page []RecordRef) error) *RefPager {
	return &RefPager{page: make([]RecordRef, 0, size), f: f}
}

// Add adds r to the page, and hands the page to f if that fills it,
// returning f's error as a [CallerError].
func (p *RefPager) Add(r RecordRef) error {
	p.page = append(p.page, r)
	if len(p.page) < cap(p.page) {
		return nil
	}
	return p.Flush()
}

// Flush hands what the page holds, if anything, to f and returns f's
// error as a [CallerError].
func (p *RefPager) Flush() error {
	if len(p.page) == 0 {
		return nil
	}
	var err error
	if ferr := p.f(p.page); ferr != nil {
		err = &CallerError{ferr}
	}
	clear(p.page) // so that the page does not keep the refs' strings alive
	p.page = p.page[:0]
	return err
}
