package sockdiag

import (
	"context"
	"errors"
	"os"
)

// Looker looks one socket up by the identity a dump reported (Client.LookupContext); tests replace it.
type Looker interface {
	LookupContext(ctx context.Context, id *Socket, ext Ext, fn func(*Socket) error) error
}

// CheckWindows looks each socket of ids up with tcp_info and calls zero(i) for those advertising a zero
// receive window (tcpi_rcv_wnd == 0). Only a socket whose receive space has run out can advertise one
// (tcp_select_window in net/ipv4/tcp_output.c), so a caller looks up the full sockets of a dump made without
// tcp_info, instead of asking the kernel to format tcp_info for every socket. It returns how many sockets
// were not checked (closed since the dump, or not reached before ctx ended or a lookup failed) and false when
// the kernel's tcp_info turned out to have no tcpi_rcv_wnd (before 6.2).
func CheckWindows(ctx context.Context, l Looker, ids []Socket, zero func(i int)) (unchecked int, hasRcvWnd bool) {
	hasRcvWnd = true
	for i := range ids {
		err := l.LookupContext(ctx, &ids[i], ExtInfo, func(s *Socket) error {
			switch {
			case !s.HasRcvWnd():
				hasRcvWnd = false
			case s.TCPInfo.RcvWnd == 0:
				zero(i)
			}
			return nil
		})
		switch {
		case errors.Is(err, os.ErrNotExist):
			unchecked++ // closed since the dump
		case err != nil:
			return unchecked + len(ids) - i, hasRcvWnd
		}
	}
	return unchecked, hasRcvWnd
}
