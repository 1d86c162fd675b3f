package sockdiag

import (
	"errors"
	"fmt"
	"io"
	"syscall"
)

var (
	// ErrTruncated reports a netlink message or attribute whose length runs past the bytes received, or is
	// too short for its own header.
	ErrTruncated = errors.New("truncated netlink message")

	// ErrMismatch reports a reply that does not carry the request's sequence number and port id.
	ErrMismatch = errors.New("netlink reply does not match the request's sequence or port id")

	// ErrOverrun reports NLMSG_OVERRUN: the kernel lost data of the dump.
	ErrOverrun = errors.New("netlink overrun: data lost")

	// ErrNoDone reports a reply stream that ended before NLMSG_DONE. errors.Is matches it with
	// io.ErrUnexpectedEOF too.
	ErrNoDone = fmt.Errorf("dump ended without NLMSG_DONE: %w", io.ErrUnexpectedEOF)
)

// kernelError turns the negative errno of NLMSG_ERROR or NLMSG_DONE into an error that wraps
// syscall.Errno, so errors.Is(err, os.ErrPermission) holds for EPERM/EACCES, errors.Is(err,
// os.ErrNotExist) for ENOENT, and errors.Is(err, syscall.EPERM) for the errno itself.
func kernelError(msgType string, code int32) error {
	return fmt.Errorf("kernel replied %s: %w", msgType, syscall.Errno(-code))
}

// isNotSupported reports whether err means the kernel does not know the request shape, so another shape
// may work: EINVAL, ENOENT (no handler for the family) or EOPNOTSUPP.
func isNotSupported(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EOPNOTSUPP)
}
