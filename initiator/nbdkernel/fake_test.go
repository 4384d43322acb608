package nbdkernel

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel plays the kernel's nbd driver behind genltest connections: it
// resolves the family, takes its own reference (a dup) to every socket
// descriptor it is handed, like sockfd_lookup, and follows nbd.c's rules for
// CONNECT, RECONFIGURE (a socket replaces a dead one or is dropped),
// DISCONNECT (NBD_CMD_DISC on every socket, then shut down) and STATUS.
type fakeKernel struct {
	t      *testing.T
	family genetlink.Family
	mcast  chan genetlink.Message // LINK_DEAD events to deliver
	reqs   chan fakeRequest       // every nbd command received
	open   atomic.Int64           // connections dialled and not closed

	mu              sync.Mutex
	index           int // the device CONNECT without an index gets
	configured      bool
	socks           []*fakeSock
	joined          []uint32
	noFamily        bool
	connectErrno    int
	dropReconfigure int // drop this many offered sockets even if one is dead
}

// fakeSock is the kernel's end of one connection.
type fakeSock struct {
	fd   int
	dead bool
}

// fakeRequest is one command as the fake kernel received it.
type fakeRequest struct {
	cmd     uint8
	version uint8
	flags   netlink.HeaderFlags
	attrs   map[uint16][]byte // top-level attributes but SOCKETS
	fds     []int
}

const (
	fakeFamilyID = 0x1d
	fakeGroupID  = 7
)

func newFakeKernel(t *testing.T, index int) *fakeKernel {
	k := &fakeKernel{
		t: t,
		family: genetlink.Family{
			ID: fakeFamilyID, Name: familyName, Version: familyVersion,
			Groups: []genetlink.MulticastGroup{{ID: fakeGroupID, Name: multicastGroup}},
		},
		mcast: make(chan genetlink.Message, 16),
		reqs:  make(chan fakeRequest, 256),
		index: index,
	}
	t.Cleanup(func() {
		k.mu.Lock()
		defer k.mu.Unlock()
		for _, s := range k.socks {
			unix.Close(s.fd)
		}
		k.socks = nil
	})
	return k
}

// client returns a Client that talks to k.
func (k *fakeKernel) client() *Client { return &Client{Dial: k.dial} }

// fakeConn is a genltest connection that can also join groups and whose
// Close interrupts a blocked Receive, as a real netlink socket's does.
type fakeConn struct {
	*genetlink.Conn
	k      *fakeKernel
	closed chan struct{}
	once   sync.Once
}

func (k *fakeKernel) dial() (Conn, error) {
	fc := &fakeConn{k: k, closed: make(chan struct{})}
	serve := genltest.ServeFamily(k.family, func(g genetlink.Message, n netlink.Message) ([]genetlink.Message, error) {
		return k.handle(fc, g, n)
	})
	fc.Conn = genltest.Dial(func(g genetlink.Message, n netlink.Message) ([]genetlink.Message, error) {
		k.mu.Lock()
		missing := k.noFamily
		k.mu.Unlock()
		if missing && n.Header.Type == unix.GENL_ID_CTRL {
			return nil, genltest.Error(int(unix.ENOENT))
		}
		return serve(g, n)
	})
	k.open.Add(1)
	return fc, nil
}

func (c *fakeConn) JoinGroup(group uint32) error {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	c.k.joined = append(c.k.joined, group)
	return nil
}

func (c *fakeConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.k.open.Add(-1)
	})
	return c.Conn.Close()
}

// handle answers one request, or a multicast Receive (an empty request).
func (k *fakeKernel) handle(fc *fakeConn, g genetlink.Message, n netlink.Message) ([]genetlink.Message, error) {
	if n.Header.Type == 0 && len(n.Data) == 0 {
		select {
		case m := <-k.mcast:
			return []genetlink.Message{m}, nil
		case <-fc.closed:
			return nil, net.ErrClosed
		}
	}
	if n.Header.Type != fakeFamilyID {
		return nil, fmt.Errorf("request to family %d, want %d", n.Header.Type, fakeFamilyID)
	}
	req, err := parseFakeRequest(g, n)
	if err != nil {
		k.t.Errorf("fake kernel: %v", err)
		return nil, genltest.Error(int(unix.EINVAL))
	}
	// Report the request once it has taken effect (deferred calls run
	// last-in first-out: after the unlock).
	defer func() { k.reqs <- req }()
	k.mu.Lock()
	defer k.mu.Unlock()
	ack := []genetlink.Message{{}} // stands in for the netlink acknowledgement
	switch req.cmd {
	case cmdConnect:
		if k.connectErrno != 0 {
			return nil, genltest.Error(k.connectErrno)
		}
		if k.configured {
			return nil, genltest.Error(int(unix.EBUSY))
		}
		if _, ok := req.attrs[attrSizeBytes]; !ok || len(req.fds) == 0 {
			return nil, genltest.Error(int(unix.EINVAL))
		}
		if b, ok := req.attrs[attrIndex]; ok {
			k.index = int(binary.NativeEndian.Uint32(b))
		}
		for _, fd := range req.fds {
			k.socks = append(k.socks, &fakeSock{fd: k.take(fd)})
		}
		k.configured = true
		attrs, _ := encodeIndex(k.index)
		return []genetlink.Message{{
			Header: genetlink.Header{Command: cmdConnect, Version: familyVersion},
			Data:   attrs,
		}}, nil
	case cmdReconfigure:
		if !k.configured || k.reqIndex(req) != k.index {
			return nil, genltest.Error(int(unix.EINVAL))
		}
		for _, fd := range req.fds {
			s := k.deadSock()
			if s == nil || k.dropReconfigure > 0 {
				k.dropReconfigure--
				break // -ENOSPC: the rest is ignored, success reported
			}
			unix.Close(s.fd)
			s.fd, s.dead = k.take(fd), false
		}
		return ack, nil
	case cmdDisconnect:
		if k.reqIndex(req) != k.index {
			return nil, genltest.Error(int(unix.EINVAL))
		}
		k.disconnectLocked()
		return ack, nil
	case cmdStatus:
		var attrs []byte
		if i := k.reqIndex(req); i < 0 || i == k.index {
			attrs = statusReply(k.index, k.configured)
		} else {
			attrs = statusReply(-1, false)
		}
		return []genetlink.Message{{
			Header: genetlink.Header{Command: cmdStatus, Version: familyVersion},
			Data:   attrs,
		}}, nil
	}
	return nil, genltest.Error(int(unix.EOPNOTSUPP))
}

// take duplicates a descriptor handed over, as the kernel takes a reference.
func (k *fakeKernel) take(fd int) int {
	nfd, err := unix.Dup(fd)
	if err != nil {
		k.t.Errorf("fake kernel: dup %d: %v", fd, err)
	}
	return nfd
}

// reqIndex returns the request's NBD_ATTR_INDEX, or -1.
func (k *fakeKernel) reqIndex(req fakeRequest) int {
	b, ok := req.attrs[attrIndex]
	if !ok {
		return -1
	}
	return int(binary.NativeEndian.Uint32(b))
}

// deadSock returns a socket the kernel would consider dead: marked so, or
// whose peer (our end) went away, which its receive thread would notice.
func (k *fakeKernel) deadSock() *fakeSock {
	for _, s := range k.socks {
		pfd := []unix.PollFd{{Fd: int32(s.fd), Events: unix.POLLRDHUP}}
		if n, _ := unix.Poll(pfd, 0); n > 0 && pfd[0].Revents&(unix.POLLRDHUP|unix.POLLHUP) != 0 {
			s.dead = true
		}
		if s.dead {
			return s
		}
	}
	return nil
}

// disconnectLocked sends NBD_CMD_DISC on every live socket and shuts them
// all down, as nbd_disconnect_and_put does.
func (k *fakeKernel) disconnectLocked() {
	for _, s := range k.socks {
		if !s.dead {
			unix.Write(s.fd, encodeRequest(nbdCmdDisc, 0, 0, 0))
		}
		unix.Shutdown(s.fd, unix.SHUT_RDWR)
		s.dead = true
	}
	k.configured = false
}

// disconnect is another process detaching the device.
func (k *fakeKernel) disconnect() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.disconnectLocked()
}

// kill marks socket i dead the way the kernel does after a timeout:
// shut down, and announced with LINK_DEAD unless announce is false.
func (k *fakeKernel) kill(i int, announce bool) {
	k.mu.Lock()
	s := k.socks[i]
	unix.Shutdown(s.fd, unix.SHUT_RDWR)
	s.dead = true
	index := k.index
	k.mu.Unlock()
	if announce {
		k.linkDead(index)
	}
}

// linkDead multicasts NBD_CMD_LINK_DEAD for index.
func (k *fakeKernel) linkDead(index int) {
	attrs, _ := encodeIndex(index)
	k.mcast <- genetlink.Message{
		Header: genetlink.Header{Command: cmdLinkDead, Version: familyVersion},
		Data:   attrs,
	}
}

// sock returns the current descriptor of socket i.
func (k *fakeKernel) sock(i int) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.socks[i].fd
}

// send writes an NBD request on socket i without waiting for a reply.
func (k *fakeKernel) send(i int, typ uint16) {
	k.t.Helper()
	if _, err := unix.Write(k.sock(i), encodeRequest(typ, 99, 0, 0)); err != nil {
		k.t.Fatalf("fake kernel: send on socket %d: %v", i, err)
	}
}

// roundTrip reads 512 bytes at offset 0 over socket i and checks the reply.
func (k *fakeKernel) roundTrip(i int) {
	k.t.Helper()
	f := k.conn(i)
	defer f.Close()
	f.SetDeadline(time.Now().Add(5 * time.Second))
	const handle = 0x1122334455667788
	if _, err := f.Write(encodeRequest(nbdCmdRead, handle, 0, 512)); err != nil {
		k.t.Fatalf("fake kernel: write request on socket %d: %v", i, err)
	}
	reply := make([]byte, nbdReplyLen+512)
	if _, err := io.ReadFull(f, reply); err != nil {
		k.t.Fatalf("fake kernel: read reply on socket %d: %v", i, err)
	}
	if binary.BigEndian.Uint32(reply) != nbdReplyMagic || binary.BigEndian.Uint32(reply[4:]) != 0 ||
		binary.BigEndian.Uint64(reply[8:]) != handle {
		k.t.Fatalf("fake kernel: bad reply %x", reply[:nbdReplyLen])
	}
}

// conn returns a net.Conn on a duplicate of socket i, for deadlines.
func (k *fakeKernel) conn(i int) net.Conn {
	k.t.Helper()
	fd, err := unix.Dup(k.sock(i))
	if err != nil {
		k.t.Fatalf("fake kernel: dup: %v", err)
	}
	f := os.NewFile(uintptr(fd), "fake-kernel")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		k.t.Fatalf("fake kernel: %v", err)
	}
	return c
}

// waitRequest returns the next command cmd received, skipping STATUS
// queries unless cmd is STATUS.
func (k *fakeKernel) waitRequest(cmd uint8) fakeRequest {
	k.t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case req := <-k.reqs:
			if req.cmd == cmd {
				return req
			}
			if req.cmd != cmdStatus {
				k.t.Fatalf("fake kernel: got command %d, want %d", req.cmd, cmd)
			}
		case <-timeout:
			k.t.Fatalf("fake kernel: no command %d", cmd)
		}
	}
}

// expectNone checks that no command but STATUS arrives within d.
func (k *fakeKernel) expectNone(d time.Duration) {
	k.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case req := <-k.reqs:
			if req.cmd != cmdStatus {
				k.t.Fatalf("fake kernel: unexpected command %d", req.cmd)
			}
		case <-timeout:
			return
		}
	}
}

// parseFakeRequest decodes a request the way nbd.c's policy reads it.
func parseFakeRequest(g genetlink.Message, n netlink.Message) (fakeRequest, error) {
	req := fakeRequest{cmd: g.Header.Command, version: g.Header.Version, flags: n.Header.Flags,
		attrs: make(map[uint16][]byte)}
	attrs, err := netlink.UnmarshalAttributes(g.Data)
	if err != nil {
		return req, err
	}
	for _, a := range attrs {
		typ := a.Type &^ (netlink.Nested | netlink.NetByteOrder)
		if typ != attrSockets {
			req.attrs[typ] = a.Data
			continue
		}
		items, err := netlink.UnmarshalAttributes(a.Data)
		if err != nil {
			return req, err
		}
		for _, item := range items {
			if item.Type&^netlink.Nested != sockItem {
				return req, fmt.Errorf("socks must be embedded in a SOCK_ITEM attr")
			}
			inner, err := netlink.UnmarshalAttributes(item.Data)
			if err != nil {
				return req, err
			}
			for _, fd := range inner {
				if fd.Type == sockFD && len(fd.Data) == 4 {
					req.fds = append(req.fds, int(binary.NativeEndian.Uint32(fd.Data)))
				}
			}
		}
	}
	return req, nil
}

// statusReply builds a STATUS reply listing device index, or no device if
// index is negative.
func statusReply(index int, connected bool) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(attrDeviceList, func(list *netlink.AttributeEncoder) error {
		if index >= 0 {
			list.Nested(deviceItem, func(item *netlink.AttributeEncoder) error {
				item.Uint32(deviceIndex, uint32(index))
				var c uint8
				if connected {
					c = 1
				}
				item.Uint8(deviceConnected, c)
				return nil
			})
		}
		return nil
	})
	b, _ := ae.Encode()
	return b
}
