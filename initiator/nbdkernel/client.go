package nbdkernel

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotLoaded reports that the kernel has no nbd generic netlink family:
// the nbd module is not loaded (or the kernel lacks it).
var ErrNotLoaded = errors.New("kernel nbd module not loaded: run `modprobe nbd`")

// ErrNoDevice reports that the kernel has no /dev/nbdN with the given index.
var ErrNoDevice = errors.New("no such nbd device")

// Conn is the generic netlink connection the package talks to the kernel
// through. *genetlink.Conn implements it; tests substitute a fake kernel.
type Conn interface {
	// GetFamily resolves a generic netlink family by name.
	GetFamily(name string) (genetlink.Family, error)
	// Execute sends a request and returns the reply messages.
	Execute(m genetlink.Message, family uint16, flags netlink.HeaderFlags) ([]genetlink.Message, error)
	// Receive returns the next multicast messages of joined groups.
	Receive() ([]genetlink.Message, []netlink.Message, error)
	// JoinGroup subscribes the connection to a multicast group.
	JoinGroup(group uint32) error
	// Close releases the connection and interrupts a blocked Receive.
	Close() error
}

// Client controls the kernel's nbd driver through its generic netlink
// family. The zero Client talks to the running kernel.
type Client struct {
	// Dial opens a new generic netlink connection. If nil, the Client
	// dials the kernel with genetlink.Dial.
	Dial func() (Conn, error)
}

// dial opens a connection.
func (c *Client) dial() (Conn, error) {
	if c.Dial != nil {
		return c.Dial()
	}
	conn, err := genetlink.Dial(nil)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// open dials a connection and resolves the nbd family on it. The caller
// closes the connection.
func (c *Client) open() (Conn, genetlink.Family, error) {
	conn, err := c.dial()
	if err != nil {
		return nil, genetlink.Family{}, fmt.Errorf("dial generic netlink: %w", err)
	}
	fam, err := conn.GetFamily(familyName)
	if err != nil {
		conn.Close()
		return nil, genetlink.Family{}, familyError(err)
	}
	return conn, fam, nil
}

// familyError explains why the nbd family could not be resolved.
func familyError(err error) error {
	if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("resolve generic netlink family %q: %w", familyName, err)
	}
	if _, serr := os.Stat("/sys/module/nbd"); serr == nil {
		// Loaded, yet no family: a kernel from before the netlink
		// interface (Linux 4.12).
		return fmt.Errorf("%w (module present but has no netlink interface; kernel too old?)", ErrNotLoaded)
	}
	return ErrNotLoaded
}

// Available reports whether the kernel's nbd driver can be reached: nil if
// so, an error wrapping ErrNotLoaded if the module is missing.
func (c *Client) Available() error {
	conn, _, err := c.open()
	if err != nil {
		return fmt.Errorf("nbdkernel: %w", err)
	}
	return conn.Close()
}

// Detach disconnects /dev/nbd<index>, whichever process attached it: the
// kernel sends NBD_CMD_DISC on each of the device's sockets, shuts them down
// and fails the I/O still queued. A device that is not connected is left
// alone without error.
func (c *Client) Detach(index int) error {
	if err := checkIndex(index); err != nil {
		return fmt.Errorf("nbdkernel: detach: %w", err)
	}
	conn, fam, err := c.open()
	if err != nil {
		return fmt.Errorf("nbdkernel: detach nbd%d: %w", index, err)
	}
	defer conn.Close()
	if err := disconnect(conn, fam, index); err != nil {
		if errors.Is(err, unix.EINVAL) {
			// The kernel answers EINVAL for an index it has no device at.
			if _, serr := status(conn, fam, index); errors.Is(serr, ErrNoDevice) {
				err = ErrNoDevice
			}
		}
		return fmt.Errorf("nbdkernel: detach nbd%d: %w", index, err)
	}
	return nil
}

// Status reports on /dev/nbd<index>; an error wrapping ErrNoDevice if the
// kernel has no such device.
func (c *Client) Status(index int) (DeviceStatus, error) {
	if err := checkIndex(index); err != nil {
		return DeviceStatus{}, fmt.Errorf("nbdkernel: status: %w", err)
	}
	conn, fam, err := c.open()
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("nbdkernel: status nbd%d: %w", index, err)
	}
	defer conn.Close()
	s, err := status(conn, fam, index)
	if err != nil {
		return DeviceStatus{}, fmt.Errorf("nbdkernel: status nbd%d: %w", index, err)
	}
	return s, nil
}

// List reports on every nbd device the kernel has.
func (c *Client) List() ([]DeviceStatus, error) {
	conn, fam, err := c.open()
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: list: %w", err)
	}
	defer conn.Close()
	list, err := statusList(conn, fam, -1)
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: list: %w", err)
	}
	return list, nil
}

// Attach connects a new device with the default Client; see Client.Attach.
func Attach(ctx context.Context, cfg Config) (*Device, error) {
	return new(Client).Attach(ctx, cfg)
}

// Detach disconnects /dev/nbd<index> with the default Client; see
// Client.Detach.
func Detach(index int) error { return new(Client).Detach(index) }

// Status reports on /dev/nbd<index> with the default Client; see
// Client.Status.
func Status(index int) (DeviceStatus, error) { return new(Client).Status(index) }

// Available reports whether the running kernel's nbd driver can be reached;
// see Client.Available.
func Available() error { return new(Client).Available() }

// execute sends one nbd command. The kernel replies to CONNECT and STATUS
// with a message and to the others with nothing, so every request asks for
// an acknowledgement too: the reply to a command that has one arrives
// before the acknowledgement and is what Execute returns, while a command
// without one returns the acknowledgement alone. The connection is not
// reused afterwards, so an unread acknowledgement does no harm.
func execute(conn Conn, fam genetlink.Family, cmd uint8, attrs []byte) ([]genetlink.Message, error) {
	msg := genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: familyVersion},
		Data:   attrs,
	}
	msgs, err := conn.Execute(msg, fam.ID, netlink.Request|netlink.Acknowledge)
	if err != nil {
		return nil, explainErrno(err)
	}
	return msgs, nil
}

// explainErrno adds what an errno from the nbd family means to err.
func explainErrno(err error) error {
	switch {
	case errors.Is(err, unix.EPERM):
		return fmt.Errorf("%w (needs CAP_SYS_ADMIN: run as root)", err)
	case errors.Is(err, unix.EBUSY):
		return fmt.Errorf("%w (device already in use)", err)
	case errors.Is(err, unix.EINVAL):
		return fmt.Errorf("%w (rejected by the nbd driver; see dmesg)", err)
	}
	return err
}

// disconnect sends NBD_CMD_DISCONNECT for index.
func disconnect(conn Conn, fam genetlink.Family, index int) error {
	attrs, err := encodeIndex(index)
	if err != nil {
		return err
	}
	_, err = execute(conn, fam, cmdDisconnect, attrs)
	return err
}

// status sends NBD_CMD_STATUS for one device.
func status(conn Conn, fam genetlink.Family, index int) (DeviceStatus, error) {
	list, err := statusList(conn, fam, index)
	if err != nil {
		return DeviceStatus{}, err
	}
	for _, s := range list {
		if s.Index == index {
			return s, nil
		}
	}
	return DeviceStatus{}, ErrNoDevice
}

// statusList sends NBD_CMD_STATUS for index, or for all devices if index
// is negative.
func statusList(conn Conn, fam genetlink.Family, index int) ([]DeviceStatus, error) {
	attrs, err := encodeIndex(index)
	if err != nil {
		return nil, err
	}
	msgs, err := execute(conn, fam, cmdStatus, attrs)
	if err != nil {
		return nil, err
	}
	var out []DeviceStatus
	for _, m := range msgs {
		if m.Header.Command != cmdStatus {
			continue // the acknowledgement
		}
		list, err := decodeStatus(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decode status reply: %w", err)
		}
		out = append(out, list...)
	}
	return out, nil
}

// reconfigure sends NBD_CMD_RECONFIGURE handing fds to device index.
func reconfigure(conn Conn, fam genetlink.Family, index int, backend string, fds []int) error {
	attrs, err := encodeReconfigure(index, backend, fds)
	if err != nil {
		return err
	}
	_, err = execute(conn, fam, cmdReconfigure, attrs)
	return err
}

// checkIndex validates a device index given by a caller.
func checkIndex(index int) error {
	if index < 0 || index > maxIndex {
		return fmt.Errorf("device index %d out of range 0..%d", index, maxIndex)
	}
	return nil
}
