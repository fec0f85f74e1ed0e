//go:build !linux

package jsonfile

// watch is not available here: new containers' files are opened when
// their reader asks.
func (p *preopener) watch(done chan struct{}) (stop func(), err error) {
	close(done)
	return func() {}, errNoWatch
}
