package trafficgen

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// CloseWindows writes to every connection until its peer's receive window is closed: no byte has gone for
// 300ms, so the receive buffer is full and the sender is left to probe the zero window. Bounded by 10s.
func CloseWindows(conns []*net.TCPConn) error {
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range conns {
		stalled := time.Now()
		for time.Since(stalled) < 300*time.Millisecond {
			if time.Now().After(deadline) {
				return fmt.Errorf("window of %s still open after 10s", c.RemoteAddr())
			}
			c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
			n, err := c.Write(buf)
			if n > 0 {
				stalled = time.Now()
			}
			if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
				return err
			}
		}
	}
	return nil
}
