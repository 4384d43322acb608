package seal

import (
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ironblade/ironblade/aoe"
)

// frameHandler is one side's part of a layer: what it does to each frame
// read (inbound: how long the frame is once opened, and whether it goes up
// at all) and to each frame written (outbound: the frame to send, built in
// out's storage, or none).
type frameHandler interface {
	inbound(b []byte) (int, bool)
	outbound(out, b []byte) ([]byte, bool)
}

// layer is what TargetLink and InitiatorLink share: the link beneath, its
// batch form if it has one, and buffers to build frames to send in.
type layer struct {
	link    aoe.Link
	batch   aoe.BatchLink
	mac     aoe.MAC
	handler frameHandler
	bufs    sync.Pool
}

func (l *layer) init(link aoe.Link, h frameHandler) {
	l.link, l.mac, l.handler = link, link.HardwareAddr(), h
	l.batch, _ = link.(aoe.BatchLink)
	l.bufs.New = func() any {
		b := make([]byte, max(link.MTU(), 9216)+aoe.EthernetHeaderLen+Overhead)
		return &b
	}
}

// Unwrap returns the link beneath.
func (l *layer) Unwrap() aoe.Link { return l.link }

// MTU is the link's less the sealing overhead, so that frames sized by it
// still fit sealed. It loses no sector at MTU 1500 or 9000.
func (l *layer) MTU() int { return l.link.MTU() - Overhead }

// HardwareAddr is the link's.
func (l *layer) HardwareAddr() aoe.MAC { return l.mac }

// Close closes the link beneath.
func (l *layer) Close() error { return l.link.Close() }

// SetReadDeadline passes the deadline to the link beneath, if it has them.
func (l *layer) SetReadDeadline(d time.Time) error {
	if dl, ok := l.link.(interface{ SetReadDeadline(time.Time) error }); ok {
		return dl.SetReadDeadline(d)
	}
	return errors.New("seal: link has no read deadline")
}

// ReadFrame reads the next frame for the side above, opened; frames the
// layer consumes or refuses are not returned.
func (l *layer) ReadFrame(b []byte) (int, error) {
	for {
		n, err := l.link.ReadFrame(b)
		if err != nil {
			return 0, err
		}
		if m, keep := l.handler.inbound(b[:n]); keep {
			return m, nil
		}
	}
}

// ReadFrames reads frames for the side above, opened; frames the layer
// consumes or refuses do not count.
func (l *layer) ReadFrames(bufs [][]byte, lens []int) (int, error) {
	if l.batch == nil {
		n, err := l.ReadFrame(bufs[0])
		if err != nil {
			return 0, err
		}
		lens[0] = n
		return 1, nil
	}
	for {
		n, err := l.batch.ReadFrames(bufs, lens)
		kept := 0
		for i := range max(0, min(n, len(bufs))) {
			m, keep := l.handler.inbound(bufs[i][:lens[i]])
			if !keep {
				continue
			}
			if kept != i {
				copy(bufs[kept], bufs[i][:m])
			}
			lens[kept] = m
			kept++
		}
		if kept > 0 || err != nil {
			return kept, err
		}
	}
}

// WriteFrame sends a frame of the side above, as the handler makes it.
// A frame the handler holds back counts as sent.
func (l *layer) WriteFrame(b []byte) error {
	bp := l.bufs.Get().(*[]byte)
	defer l.bufs.Put(bp)
	out, ok := l.handler.outbound(*bp, b)
	if !ok {
		return nil
	}
	return l.link.WriteFrame(out)
}

// WriteFrames sends frames in one batch. Frames held back, and a frame the
// link refuses, count as sent; the first error is returned.
func (l *layer) WriteFrames(frames [][]byte) (int, error) {
	if l.batch == nil {
		for i, f := range frames {
			if err := l.WriteFrame(f); err != nil {
				return i, err
			}
		}
		return len(frames), nil
	}
	ws := writeScratchPool.Get().(*writeScratch)
	ws.held, ws.out = slices.Grow(ws.held[:0], len(frames)), slices.Grow(ws.out[:0], len(frames))
	defer func() {
		for _, bp := range ws.held {
			l.bufs.Put(bp)
		}
		clear(ws.held)
		clear(ws.out)
		writeScratchPool.Put(ws)
	}()
	for _, f := range frames {
		bp := l.bufs.Get().(*[]byte)
		ws.held = append(ws.held, bp)
		if out, ok := l.handler.outbound(*bp, f); ok {
			ws.out = append(ws.out, out)
		}
	}
	var firstErr error
	for out := ws.out; len(out) > 0; {
		n, err := l.batch.WriteFrames(out)
		n = max(0, min(n, len(out)))
		if err != nil || n == 0 {
			if firstErr == nil {
				firstErr = err
			}
			n++ // skip the frame refused
		}
		out = out[min(n, len(out)):]
	}
	return len(frames), firstErr
}

// writeScratch holds one batch's buffers while it is sent.
type writeScratch struct {
	held []*[]byte
	out  [][]byte
}

var writeScratchPool = sync.Pool{New: func() any { return new(writeScratch) }}

// scratch returns a buffer of the layer's pool, and the function that gives
// it back.
func (l *layer) scratch() ([]byte, func()) {
	bp := l.bufs.Get().(*[]byte)
	return *bp, func() { l.bufs.Put(bp) }
}
