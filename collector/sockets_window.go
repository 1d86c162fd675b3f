package collector

import (
	"context"
	"errors"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Zero-window evidence without tcp_info on every socket: the main dump asks only for skmeminfo, and the full
// ESTABLISHED sockets it finds (the only ones that can be advertising a zero window: the window closes when
// the free receive space runs out, tcp_select_window in net/ipv4/tcp_output.c) are looked up again one by
// one with tcp_info (sockdiag.Client.LookupContext). On a host with a few slow readers that is a few
// requests per scrape instead of formatting tcp_info for every socket. With --collector.sockets.tcp-info the
// dump has every socket's window already and no lookup is made.

// maxWindowLookups bounds the lookups of one scrape; the full sockets beyond it are counted as unchecked.
const maxWindowLookups = 2048

var windowUncheckedSpec = spec("sockets", MetricSpec{
	Name: "rcv_window_unchecked_sockets", Type: Gauge,
	Help: "Full ESTABLISHED sockets whose advertised window this scrape did not check, so sockbuf_rcv_window_zero_sockets may miss them.",
	Notes: "Without --collector.sockets.tcp-info the full sockets are looked up one by one for their window, at most " +
		"2048 a scrape and within the scrape's deadline; the rest, and sockets closed before their lookup, are counted here.",
	Source: "the exporter",
})

// kernelHasRcvWnd tells whether the running kernel's tcp_info has tcpi_rcv_wnd (6.2+), before any socket
// says so: the zero-window metric is exported only where it can be right, also on a scrape without full
// sockets to look up.
func kernelHasRcvWnd() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	i := 0
	rel := u.Release[:]
	for ; i < len(rel) && rel[i] >= '0' && rel[i] <= '9'; i++ {
		major = major*10 + int(rel[i]-'0')
	}
	if i < len(rel) && rel[i] == '.' {
		for i++; i < len(rel) && rel[i] >= '0' && rel[i] <= '9'; i++ {
			minor = minor*10 + int(rel[i]-'0')
		}
	}
	return major > 6 || (major == 6 && minor >= 2)
}

// windowLooker is the part of a sockdiag.Client that looks sockets up; tests replace it.
type windowLooker interface {
	LookupContext(ctx context.Context, id *sockdiag.Socket, ext sockdiag.Ext, fn func(*sockdiag.Socket) error) error
}

// checkWindows looks up the full sockets the dump recorded and counts those advertising a zero window into
// their groups. It never fails the scrape: a lookup that cannot be made leaves its socket, and those after
// it, unchecked.
func (c *socketsCollector) checkWindows(ctx context.Context) {
	full, skipped := c.agg.FullSockets()
	c.unchecked = skipped
	looker, ok := c.client.(windowLooker)
	if !ok {
		c.unchecked += len(full)
		return
	}
	for i := range full {
		f := &full[i]
		id := sockdiag.Socket{Family: f.Family, Src: f.Src, Dst: f.Dst, IfIndex: f.IfIndex, Cookie: f.Cookie}
		err := looker.LookupContext(ctx, &id, sockdiag.ExtInfo, func(s *sockdiag.Socket) error {
			if !s.HasRcvWnd() {
				c.hasWnd = false // this kernel's tcp_info has no tcpi_rcv_wnd after all
				return nil
			}
			if s.TCPInfo.RcvWnd == 0 {
				c.agg.AddZeroWindow(f)
			}
			return nil
		})
		switch {
		case errors.Is(err, os.ErrNotExist):
			c.unchecked++ // closed since the dump
		case err != nil:
			c.logger.Debug("looking up full sockets for their window", "err", err)
			c.unchecked += len(full) - i
			return
		}
	}
}

func (c *socketsCollector) emitUnchecked(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.windowUnchecked, prometheus.GaugeValue, float64(c.unchecked))
}
