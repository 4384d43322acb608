package nbdkernel

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// A pair is a connected AF_UNIX stream socket pair: the kernel's end is a
// raw descriptor, passed by number in NBD_SOCK_FD (the kernel looks it up in
// the sending process's descriptor table while handling the message and
// takes its own reference), and ours is served by Config.Serve.
type pair struct {
	kernelFD int
	conn     *net.UnixConn
}

// newPair creates a socket pair.
func newPair() (pair, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return pair{}, fmt.Errorf("socketpair: %w", err)
	}
	f := os.NewFile(uintptr(fds[0]), "nbd-server")
	c, err := net.FileConn(f) // dups the descriptor into Go's poller
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		return pair{}, fmt.Errorf("socketpair: %w", err)
	}
	return pair{kernelFD: fds[1], conn: c.(*net.UnixConn)}, nil
}

// newPairs creates n socket pairs, or none.
func newPairs(n int) ([]pair, error) {
	pairs := make([]pair, 0, n)
	for range n {
		p, err := newPair()
		if err != nil {
			closePairs(pairs)
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

// closeKernelEnds closes our copies of the kernel ends, once the kernel has
// taken (or declined) its references.
func closeKernelEnds(pairs []pair) {
	for i := range pairs {
		if pairs[i].kernelFD >= 0 {
			unix.Close(pairs[i].kernelFD)
			pairs[i].kernelFD = -1
		}
	}
}

// closePairs closes both ends of every pair.
func closePairs(pairs []pair) {
	closeKernelEnds(pairs)
	for _, p := range pairs {
		p.conn.Close()
	}
}

// kernelFDs returns the descriptors to pass to the kernel.
func kernelFDs(pairs []pair) []int {
	fds := make([]int, len(pairs))
	for i, p := range pairs {
		fds[i] = p.kernelFD
	}
	return fds
}

// peerHungUp reports whether the other end of c has shut down or gone away,
// whatever data is still queued to be read. The kernel shuts its end down
// (SHUT_RDWR) when it marks a connection dead, and a socket it declined is
// released, which hangs up our end too. A closed c counts as hung up.
func peerHungUp(c *net.UnixConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return true
	}
	hung := true
	err = rc.Control(func(fd uintptr) {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, err := unix.Poll(pfd, 0)
		hung = err == nil && n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	})
	return err != nil || hung
}
