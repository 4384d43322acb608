//go:build linux

package rawlink

import (
	"fmt"
	"io"
	"net"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/ironblade/ironblade/aoe"
)

// sendmmsg is the write callback of WriteFrame and WriteFrames. The socket
// is bound to the interface and aoe.EtherType, so the messages need no
// destination address: the kernel sends each frame as it is. It reports
// false when the send buffer is full.
func (l *Link) sendmmsg(fd uintptr) bool {
	var done bool
	l.wsent, l.werrno, done = callNonblocking(unix.SYS_SENDMMSG, fd,
		uintptr(unsafe.Pointer(&l.wmsgs[l.woff])), uintptr(l.wcount), 0)
	return done
}

// WriteFrame implements Link. A frame larger than the MTU allows gets an
// error that wraps aoe.ErrFrameTooLarge and unix.EMSGSIZE.
func (l *Link) WriteFrame(b []byte) error {
	if err := l.checkFrame(b, l.MTU()); err != nil {
		l.sendErrors.Add(1)
		return err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.setWriteMsg(0, b)
	_, err := l.sendLocked(1)
	return err
}

// WriteFrames implements aoe.BatchLink with sendmmsg, up to 1024 frames per
// call. It stops at the first frame that cannot be sent and returns how
// many went before it, with the reason.
func (l *Link) WriteFrames(frames [][]byte) (int, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	sent := 0
	for sent < len(frames) {
		chunk := frames[sent:min(len(frames), sent+maxBatch)]
		l.growWriteLocked(len(chunk))
		mtu := l.MTU()
		var bad error
		count := len(chunk)
		for i, f := range chunk {
			if err := l.checkFrame(f, mtu); err != nil {
				count, bad = i, err
				break
			}
			l.setWriteMsg(i, f)
		}
		n, err := l.sendLocked(count)
		sent += n
		if err != nil {
			return sent, err
		}
		if bad != nil {
			l.sendErrors.Add(1)
			return sent, bad
		}
	}
	return sent, nil
}

// writeWait bounds one wait for room in the send buffer, after which a
// writer looks at closing again.
const writeWait = 10 * time.Millisecond

// writeOp runs the write callback write with the socket until it reports
// done, waiting for room in the send buffer each time it reports false. It
// fails with net.ErrClosed once the link is closed. The caller holds wmu.
func (l *Link) writeOp(write func(fd uintptr) bool) error {
	if !l.acquire() {
		return net.ErrClosed
	}
	defer l.release()
	for !write(uintptr(l.fd)) {
		if l.closed.Load() {
			return net.ErrClosed
		}
		pfd := [1]unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLOUT}}
		if _, err := unix.Poll(pfd[:], int(writeWait/time.Millisecond)); err != nil && err != unix.EINTR {
			return os.NewSyscallError("poll", err)
		}
	}
	return nil
}

// growWriteLocked makes the write scratch hold at least count messages
// (count is at most maxBatch). The caller holds wmu.
func (l *Link) growWriteLocked(count int) {
	if len(l.wmsgs) >= count {
		return
	}
	size := min(max(count, 2*len(l.wmsgs)), maxBatch)
	l.wmsgs = make([]unix.Mmsghdr, size)
	l.wiovs = make([]unix.Iovec, writeIovs*size)
}

// checkFrame refuses a frame the kernel would: shorter than an Ethernet
// header, or longer than the MTU allows. A VLAN tag does not count against
// the MTU: Linux lets a tagged frame carry MTU bytes after its tag.
func (l *Link) checkFrame(b []byte, mtu int) error {
	if len(b) < aoe.EthernetHeaderLen {
		return l.errorf("write", fmt.Errorf("%d-byte frame is shorter than an Ethernet header: %w", len(b), aoe.ErrShort))
	}
	if len(b)-aoe.EthernetHeaderLen > mtu {
		return l.errorf("write", fmt.Errorf("%d-byte frame, MTU %d: %w: %w", len(b), mtu, aoe.ErrFrameTooLarge, unix.EMSGSIZE))
	}
	return nil
}

// setWriteMsg points message i of the write scratch at frame, padded to
// aoe.MinFrameLen; on a VLAN link, with the tag inserted after the addresses.
// The padding keeps the frame aoe.MinFrameLen long once a switch removes the
// tag.
func (l *Link) setWriteMsg(i int, frame []byte) {
	iov := l.wiovs[writeIovs*i : writeIovs*(i+1)]
	niov := 0
	add := func(p *byte, n int) {
		iov[niov].Base = p
		iov[niov].SetLen(n)
		niov++
	}
	if l.vlan == 0 {
		add(unsafe.SliceData(frame), len(frame))
	} else {
		add(&frame[0], vlanTagOff)
		add(&l.tag[0], vlanTagLen)
		add(&frame[vlanTagOff], len(frame)-vlanTagOff)
	}
	if len(frame) < aoe.MinFrameLen {
		add(&l.pad[0], aoe.MinFrameLen-len(frame))
	}
	m := &l.wmsgs[i]
	m.Hdr.Iov = &iov[0]
	m.Hdr.SetIovlen(niov)
	m.Len = 0
}

// sendLocked sends the first count messages of the write scratch, calling
// sendmmsg until all are sent or one fails. The caller holds wmu.
func (l *Link) sendLocked(count int) (int, error) {
	defer clear(l.wiovs[:writeIovs*count]) // do not keep the caller's frames alive
	sent := 0
	for sent < count {
		l.woff, l.wcount = sent, count-sent
		if err := l.writeOp(l.writeMany); err != nil {
			l.sendErrors.Add(1)
			return sent, l.ioError("write", err)
		}
		if l.werrno != 0 {
			l.sendErrors.Add(1)
			if l.werrno == unix.EMSGSIZE {
				// The MTU dropped since it was last read.
				l.mtuMu.Lock()
				_ = l.refreshMTULocked()
				l.mtuMu.Unlock()
				return sent, l.errorf("write", fmt.Errorf("MTU %d: %w: %w", l.mtu.Load(), aoe.ErrFrameTooLarge, os.NewSyscallError("sendmmsg", l.werrno)))
			}
			return sent, l.ioError("write", os.NewSyscallError("sendmmsg", l.werrno))
		}
		if l.wsent <= 0 {
			return sent, l.errorf("write", io.ErrShortWrite)
		}
		var bytes uint64
		for _, m := range l.wmsgs[sent : sent+l.wsent] {
			bytes += uint64(m.Len)
		}
		sent += l.wsent
		l.framesOut.Add(uint64(l.wsent))
		l.bytesOut.Add(bytes)
	}
	return sent, nil
}
