package nbdkernel

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
)

// The generic netlink family of the kernel's nbd driver
// (include/uapi/linux/nbd-netlink.h: NBD_GENL_FAMILY_NAME, NBD_GENL_VERSION,
// NBD_GENL_MCAST_GROUP_NAME).
const (
	familyName     = "nbd"
	familyVersion  = 1
	multicastGroup = "nbd_mc_group"
)

// Generic netlink commands (nbd-netlink.h, the NBD_CMD_* enum; not the wire
// commands of the same names in nbd.h).
const (
	cmdConnect     uint8 = 1 // NBD_CMD_CONNECT
	cmdDisconnect  uint8 = 2 // NBD_CMD_DISCONNECT
	cmdReconfigure uint8 = 3 // NBD_CMD_RECONFIGURE
	cmdLinkDead    uint8 = 4 // NBD_CMD_LINK_DEAD, multicast by the kernel
	cmdStatus      uint8 = 5 // NBD_CMD_STATUS
)

// Top-level attributes (nbd-netlink.h, the NBD_ATTR_* enum). The kernel's
// policy types are noted: integers are in host byte order.
const (
	attrIndex             uint16 = 1  // NBD_ATTR_INDEX, u32
	attrSizeBytes         uint16 = 2  // NBD_ATTR_SIZE_BYTES, u64
	attrBlockSizeBytes    uint16 = 3  // NBD_ATTR_BLOCK_SIZE_BYTES, u64
	attrTimeout           uint16 = 4  // NBD_ATTR_TIMEOUT, u64 seconds
	attrServerFlags       uint16 = 5  // NBD_ATTR_SERVER_FLAGS, u64
	attrClientFlags       uint16 = 6  // NBD_ATTR_CLIENT_FLAGS, u64
	attrSockets           uint16 = 7  // NBD_ATTR_SOCKETS, nested
	attrDeadConnTimeout   uint16 = 8  // NBD_ATTR_DEAD_CONN_TIMEOUT, u64 seconds
	attrDeviceList        uint16 = 9  // NBD_ATTR_DEVICE_LIST, nested (STATUS reply)
	attrBackendIdentifier uint16 = 10 // NBD_ATTR_BACKEND_IDENTIFIER, string (newer kernels; older ignore it)
)

// Nested attributes: NBD_ATTR_SOCKETS holds NBD_SOCK_ITEMs, each holding an
// NBD_SOCK_FD; NBD_ATTR_DEVICE_LIST holds NBD_DEVICE_ITEMs, each holding
// NBD_DEVICE_INDEX and NBD_DEVICE_CONNECTED.
const (
	sockItem        uint16 = 1 // NBD_SOCK_ITEM
	sockFD          uint16 = 1 // NBD_SOCK_FD, u32
	deviceItem      uint16 = 1 // NBD_DEVICE_ITEM
	deviceIndex     uint16 = 1 // NBD_DEVICE_INDEX, u32
	deviceConnected uint16 = 2 // NBD_DEVICE_CONNECTED, u8
)

// Transmission flags this package looks at (include/uapi/linux/nbd.h,
// NBD_FLAG_*); the rest pass through Config.ServerFlags untouched.
const (
	flagHasFlags     uint64 = 1 << 0 // NBD_FLAG_HAS_FLAGS
	flagCanMultiConn uint64 = 1 << 8 // NBD_FLAG_CAN_MULTI_CONN
)

// Client flags (nbd.h, NBD_CFLAG_*): how the kernel treats the device, not
// what the server can do.
const (
	// ClientDestroyOnDisconnect makes the kernel delete the /dev/nbdN device
	// once it is disconnected. Meant for devices the kernel created for
	// AnyIndex; on a preallocated device (nbd0..nbds_max-1) it removes a node
	// other tools expect to exist.
	ClientDestroyOnDisconnect uint64 = 1 << 0
	// ClientDisconnectOnClose makes the kernel disconnect the device when its
	// last opener closes it. Any short-lived opener (udev's blkid, a
	// one-shot dd) then tears the device down, so it suits only devices that
	// are opened once, right after attaching.
	ClientDisconnectOnClose uint64 = 1 << 1

	knownClientFlags = ClientDestroyOnDisconnect | ClientDisconnectOnClose
)

// maxIndex is the largest device index the kernel can accept: index <<
// part_shift must fit the 20-bit minor number (MINORMASK), and part_shift is
// at least 0. The kernel rejects smaller limits itself (5 bits go to
// partitions with the default max_part=16).
const maxIndex = 1<<20 - 1

// connectRequest is the content of an NBD_CMD_CONNECT message, in the
// kernel's units.
type connectRequest struct {
	index              int // AnyIndex: NBD_ATTR_INDEX is left out
	sizeBytes          uint64
	blockSizeBytes     uint64
	timeoutSec         uint64 // 0: left out (kernel default)
	deadConnTimeoutSec uint64 // 0: left out (kernel default: no waiting)
	serverFlags        uint64
	clientFlags        uint64
	backend            string // "": left out
	fds                []int
}

// encode returns the attributes of the request. The kernel requires
// NBD_ATTR_SIZE_BYTES and NBD_ATTR_SOCKETS; everything else is optional.
func (r connectRequest) encode() ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	if r.index >= 0 {
		ae.Uint32(attrIndex, uint32(r.index))
	}
	ae.Uint64(attrSizeBytes, r.sizeBytes)
	ae.Uint64(attrBlockSizeBytes, r.blockSizeBytes)
	if r.timeoutSec > 0 {
		ae.Uint64(attrTimeout, r.timeoutSec)
	}
	if r.deadConnTimeoutSec > 0 {
		ae.Uint64(attrDeadConnTimeout, r.deadConnTimeoutSec)
	}
	ae.Uint64(attrServerFlags, r.serverFlags)
	ae.Uint64(attrClientFlags, r.clientFlags)
	if r.backend != "" {
		ae.String(attrBackendIdentifier, r.backend)
	}
	encodeSockets(ae, r.fds)
	return ae.Encode()
}

// encodeReconfigure returns the attributes of an NBD_CMD_RECONFIGURE message
// that hands the kernel fresh sockets for the dead ones of device index. A
// device attached with a backend identifier must be given it again.
func encodeReconfigure(index int, backend string, fds []int) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, uint32(index))
	if backend != "" {
		ae.String(attrBackendIdentifier, backend)
	}
	encodeSockets(ae, fds)
	return ae.Encode()
}

// encodeSockets adds NBD_ATTR_SOCKETS, one NBD_SOCK_ITEM per descriptor.
func encodeSockets(ae *netlink.AttributeEncoder, fds []int) {
	ae.Nested(attrSockets, func(items *netlink.AttributeEncoder) error {
		for _, fd := range fds {
			if fd < 0 {
				return fmt.Errorf("invalid socket descriptor %d", fd)
			}
			items.Nested(sockItem, func(item *netlink.AttributeEncoder) error {
				item.Uint32(sockFD, uint32(fd))
				return nil
			})
		}
		return nil
	})
}

// encodeIndex returns an attribute set holding only NBD_ATTR_INDEX, the whole
// of an NBD_CMD_DISCONNECT message and of an NBD_CMD_STATUS message about one
// device. A negative index gives an empty set: STATUS then lists all devices.
func encodeIndex(index int) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	if index >= 0 {
		ae.Uint32(attrIndex, uint32(index))
	}
	return ae.Encode()
}

// errNoIndex reports a message that lacks NBD_ATTR_INDEX.
var errNoIndex = errors.New("no device index in message")

// decodeIndex returns NBD_ATTR_INDEX from the attributes of a CONNECT reply
// or a LINK_DEAD event.
func decodeIndex(b []byte) (int, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, err
	}
	index := -1
	for ad.Next() {
		if ad.Type() == attrIndex {
			index = int(ad.Uint32())
		}
	}
	if err := ad.Err(); err != nil {
		return 0, err
	}
	if index < 0 {
		return 0, errNoIndex
	}
	if index > maxIndex {
		return 0, fmt.Errorf("device index %d out of range", index)
	}
	return index, nil
}

// DeviceStatus is what NBD_CMD_STATUS reports about one device.
type DeviceStatus struct {
	// Index is the N of /dev/nbdN.
	Index int
	// Connected reports that the device has a configuration: it was
	// connected and has not been fully torn down. A device disconnected
	// while something still holds it open stays Connected until the last
	// close.
	Connected bool
}

// decodeStatus returns the devices listed in the attributes of a STATUS
// reply.
func decodeStatus(b []byte) ([]DeviceStatus, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var out []DeviceStatus
	for ad.Next() {
		if ad.Type() != attrDeviceList {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != deviceItem {
					continue
				}
				s, err := decodeDevice(list)
				if err != nil {
					return err
				}
				out = append(out, s)
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// decodeDevice decodes the NBD_DEVICE_ITEM that ad points at.
func decodeDevice(ad *netlink.AttributeDecoder) (DeviceStatus, error) {
	s := DeviceStatus{Index: -1}
	ad.Nested(func(item *netlink.AttributeDecoder) error {
		for item.Next() {
			switch item.Type() {
			case deviceIndex:
				s.Index = int(item.Uint32())
			case deviceConnected:
				s.Connected = item.Uint8() != 0
			}
		}
		return nil
	})
	if err := ad.Err(); err != nil {
		return DeviceStatus{}, err
	}
	if s.Index < 0 || s.Index > maxIndex {
		return DeviceStatus{}, fmt.Errorf("device item with missing or out-of-range index %d", s.Index)
	}
	return s, nil
}
