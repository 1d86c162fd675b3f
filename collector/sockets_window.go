package collector

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockbuf/sockbuf_exporter/sockdiag"
)

// Zero-window evidence without tcp_info on every socket: the main dump asks only for skmeminfo, and the full
// ESTABLISHED sockets it finds (the only ones that can be advertising a zero window) are looked up again one
// by one with tcp_info (sockdiag.CheckWindows). On a host with a few slow readers that is a few
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

// checkWindows looks up the full sockets the dump recorded and counts those advertising a zero window into
// their groups. It never fails the scrape: a socket it cannot check is counted as unchecked.
func (c *socketsCollector) checkWindows(ctx context.Context) {
	full, skipped := c.agg.FullSockets()
	looker, ok := c.client.(sockdiag.Looker)
	if !ok {
		c.unchecked = skipped + len(full)
		return
	}
	c.ids = c.ids[:0]
	for i := range full {
		f := &full[i]
		c.ids = append(c.ids, sockdiag.Socket{Family: f.Family, Src: f.Src, Dst: f.Dst, IfIndex: f.IfIndex, Cookie: f.Cookie})
	}
	unchecked, hasRcvWnd := sockdiag.CheckWindows(ctx, looker, c.ids, func(i int) { c.agg.AddZeroWindow(&full[i]) })
	c.unchecked = skipped + unchecked
	c.hasWnd = c.hasWnd && hasRcvWnd // this kernel's tcp_info has no tcpi_rcv_wnd after all
}

func (c *socketsCollector) emitUnchecked(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.windowUnchecked, prometheus.GaugeValue, float64(c.unchecked))
}
