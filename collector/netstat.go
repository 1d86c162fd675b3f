package collector

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// The host collectors parse /proc themselves instead of using github.com/prometheus/procfs (v0.23.0), which
// does have Proc.Netstat, Proc.Snmp, NetSockstat and NetSoftnetStat:
//   - its netstat/snmp parsers store every value as *float64 from strconv.ParseFloat, so a counter above 2^53
//     loses precision and "-1", "NaN" or "1e3" pass as valid counters;
//   - their TcpExt struct is a fixed field list, so a field the struct does not know is dropped, and a file
//     with an odd number of lines is not reported as truncated;
//   - they open the file on every read and allocate a map or a pointer per field (about 380 allocations for
//     netstat and snmp, BenchmarkNetstatReadParse), while these parsers pread kept descriptors into a pooled
//     buffer and look up only the fields we export, which keeps a scrape cheaper than node_exporter's
//     (collector/bench/host.sh).
// The parsers below check what those do not: a header/value count mismatch, a last line without its newline
// (a truncated read), a number that is negative, non-numeric or beyond uint64.

func init() {
	registerCollector("netstat", "TCP receive-path counters from /proc/net/netstat (TcpExt) and /proc/net/snmp (Tcp)", true,
		func(cfg Config, _ *slog.Logger) (Collector, error) { return newNetstatCollector(cfg), nil })
}

// netstatField is one kernel counter exported by the netstat collector.
type netstatField struct {
	file  string  // under <proc>/net: "netstat" or "snmp"
	proto string  // line prefix without the colon: "TcpExt", "Tcp"
	name  string  // kernel field name, e.g. "PruneCalled"
	scale float64 // 1, or 0.001 for a counter the kernel keeps in milliseconds
	spec  MetricSpec
}

// counterField declares a counter read from <proc>/net/<file>. sentence is what `netstat -s` prints for the
// field (net-tools prints "Name: N" for the fields it has no sentence for), so a user can grep for either.
func counterField(file, proto, name, metric, sentence, help string) netstatField {
	return netstatField{file: file, proto: proto, name: name, scale: 1, spec: spec("netstat", MetricSpec{
		Name:   metric,
		Type:   Counter,
		Help:   fmt.Sprintf("%s: %s (netstat -s: %q). %s", proto, name, sentence, help),
		Source: fmt.Sprintf("/proc/net/%s %s %s", file, proto, name),
	})}
}

// netstatFields lists every counter the collector exports. The receive-path TcpExt counters come first, in
// the order a packet meets them.
var netstatFields = []netstatField{
	counterField("netstat", "TcpExt", "PruneCalled", "tcp_prune_called_total",
		"packets pruned from receive queue because of socket buffer overrun",
		"The receive queue went over rcvbuf; the kernel collapsed or pruned it."),
	counterField("netstat", "TcpExt", "RcvPruned", "tcp_rcv_pruned_total",
		"packets pruned from receive queue",
		"Pruning freed too little room; the arriving segment was dropped."),
	counterField("netstat", "TcpExt", "OfoPruned", "tcp_ofo_pruned_total",
		"packets dropped from out-of-order queue because of socket buffer overrun",
		"The out-of-order queue was purged to make room; that data must be resent."),
	counterField("netstat", "TcpExt", "TCPRcvCollapsed", "tcp_rcv_collapsed_total",
		"packets collapsed in receive queue due to low socket buffer",
		"Buffers copied into compact ones to save receive memory."),
	counterField("netstat", "TcpExt", "TCPRcvQDrop", "tcp_rcvq_drop_total",
		"TCPRcvQDrop: N",
		"In-order segments dropped: receive memory could not be charged."),
	counterField("netstat", "TcpExt", "TCPBacklogDrop", "tcp_backlog_drop_total",
		"TCPBacklogDrop: N",
		"Segments dropped: socket busy in a system call and its backlog full."),
	counterField("netstat", "TcpExt", "TCPOFOQueue", "tcp_ofo_queue_total",
		"TCPOFOQueue: N",
		"Segments put in the out-of-order queue."),
	counterField("netstat", "TcpExt", "TCPOFODrop", "tcp_ofo_drop_total",
		"TCPOFODrop: N",
		"Out-of-order segments dropped: receive memory could not be charged."),
	counterField("netstat", "TcpExt", "TCPOFOMerge", "tcp_ofo_merge_total",
		"TCPOFOMerge: N",
		"Out-of-order segments whose data was already queued."),
	counterField("netstat", "TcpExt", "TCPZeroWindowDrop", "tcp_zero_window_drop_total",
		"TCPZeroWindowDrop: N",
		"Segments dropped because the receive window was zero."),
	counterField("netstat", "TcpExt", "TCPRcvCoalesce", "tcp_rcv_coalesce_total",
		"TCPRcvCoalesce: N",
		"Segments merged into the previous receive buffer (normal)."),
	counterField("netstat", "TcpExt", "TCPWantZeroWindowAdv", "tcp_want_zero_window_adv_total",
		"TCPWantZeroWindowAdv: N",
		"Times the receive window should have closed but could not shrink."),
	counterField("netstat", "TcpExt", "TCPToZeroWindowAdv", "tcp_to_zero_window_adv_total",
		"TCPToZeroWindowAdv: N",
		"Times the advertised receive window dropped to zero."),
	counterField("netstat", "TcpExt", "TCPFromZeroWindowAdv", "tcp_from_zero_window_adv_total",
		"TCPFromZeroWindowAdv: N",
		"Times the advertised receive window reopened from zero."),
	counterField("netstat", "TcpExt", "TCPMemoryPressures", "tcp_memory_pressures_total",
		"TCP ran low on memory N times",
		"Times TCP memory crossed the tcp_mem pressure threshold."),
	{
		file: "netstat", proto: "TcpExt", name: "TCPMemoryPressuresChrono", scale: 0.001,
		spec: spec("netstat", MetricSpec{
			Name: "tcp_memory_pressure_seconds_total", Type: Counter, Unit: "seconds",
			Help:   `TcpExt: TCPMemoryPressuresChrono (netstat -s: "TCPMemoryPressuresChrono: N", in ms). Time TCP spent in memory pressure.`,
			Source: "/proc/net/netstat TcpExt TCPMemoryPressuresChrono (ms / 1000)",
		}),
	},
	counterField("netstat", "TcpExt", "TCPAbortOnMemory", "tcp_abort_on_memory_total",
		"N connections aborted due to memory pressure",
		"Connections reset: too many orphans or TCP memory at tcp_mem max."),
	counterField("netstat", "TcpExt", "ListenOverflows", "tcp_listen_overflows_total",
		"N times the listen queue of a socket overflowed",
		"Handshakes completed into a full accept queue."),
	counterField("netstat", "TcpExt", "ListenDrops", "tcp_listen_drops_total",
		"N SYNs to LISTEN sockets dropped",
		"SYNs and handshakes dropped at listeners (includes ListenOverflows)."),
	counterField("snmp", "Tcp", "InSegs", "tcp_in_segments_total",
		"N segments received",
		"Segments received: the denominator for the drop counters."),
	counterField("snmp", "Tcp", "RetransSegs", "tcp_retransmitted_segments_total",
		"N segments retransmitted",
		"Segments retransmitted by this host."),
	counterField("snmp", "Tcp", "InErrs", "tcp_in_errors_total",
		"N bad segments received",
		"Segments received in error."),
	counterField("snmp", "Tcp", "InCsumErrors", "tcp_in_checksum_errors_total",
		"InCsumErrors: N",
		"Segments received with a bad checksum."),
}

// maxNetstatFields bounds netstatFields so that a scrape can keep its values in arrays on the stack.
const maxNetstatFields = 32

// netstatFiles groups netstatFields by file and protocol line, built once.
var netstatFiles = func() []protoFile {
	if len(netstatFields) > maxNetstatFields {
		panic("netstatFields has more than maxNetstatFields entries")
	}
	var files []protoFile
	for i, f := range netstatFields {
		fi := -1
		for j := range files {
			if files[j].name == f.file {
				fi = j
			}
		}
		if fi < 0 {
			files = append(files, protoFile{name: f.file})
			fi = len(files) - 1
		}
		files[fi].protos = addWanted(files[fi].protos, f.proto, f.name, i)
	}
	return files
}()

// addWanted records that field name of protocol line proto goes to value slot idx.
func addWanted(want []protoFields, proto, name string, idx int) []protoFields {
	for _, w := range want {
		if w.proto == proto {
			w.fields[name] = idx
			return want
		}
	}
	return append(want, protoFields{proto: proto, fields: map[string]int{name: idx}})
}

// protoFile is the set of wanted fields of one file in the "Proto: names" / "Proto: values" format.
type protoFile struct {
	name   string // under <proc>/net
	protos []protoFields
}

// protoFields maps the wanted field names of one protocol line to indexes into the caller's value slots.
type protoFields struct {
	proto  string
	fields map[string]int
}

// netstatCollector exports TCP receive-path counters from /proc/net/netstat and /proc/net/snmp. The counters
// belong to the network namespace the exporter runs in.
type netstatCollector struct {
	files []*procFile // one per netstatFiles entry
	descs []*prometheus.Desc
}

func newNetstatCollector(cfg Config) *netstatCollector {
	c := &netstatCollector{}
	for _, f := range netstatFiles {
		c.files = append(c.files, newProcFile(filepath.Join(cfg.ProcPath, "net", f.name)))
	}
	closeWhenUnreachable(c, c.files...)
	for _, f := range netstatFields {
		c.descs = append(c.descs, f.spec.Desc())
	}
	return c
}

func (c *netstatCollector) Update(ch chan<- prometheus.Metric) error {
	var (
		vals [maxNetstatFields]uint64
		have [maxNetstatFields]bool
	)
	buf := getBuf()
	defer putBuf(buf)
	for i, f := range netstatFiles {
		data, err := c.files[i].read(buf)
		if err != nil {
			return err
		}
		if err := parseProtoStats(data, f.protos, vals[:], have[:]); err != nil {
			return fmt.Errorf("parsing %s: %w", c.files[i].path, err)
		}
	}
	for i, f := range netstatFields {
		// A field this kernel does not have stays absent: a 0 would claim that nothing was dropped.
		if have[i] {
			ch <- prometheus.MustNewConstMetric(c.descs[i], prometheus.CounterValue, float64(vals[i])*f.scale)
		}
	}
	return nil
}

// parseProtoStats parses a file made of line pairs, "Proto: Name1 Name2 ..." then "Proto: v1 v2 ...", as
// /proc/net/netstat and /proc/net/snmp are. For every wanted field it stores the value in vals and sets have.
// Values of fields nobody asked for are not checked (Tcp MaxConn is -1), but every pair must have as many
// values as names, and every protocol in want must have its pair: a file without it is not the file we
// expect.
func parseProtoStats(data []byte, want []protoFields, vals []uint64, have []bool) error {
	var seen uint64 // bit i: want[i] was found
	for len(data) > 0 {
		names, rest, err := nextLine(data)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(names)) == 0 { // Linux 2.6 began /proc/net/snmp with an empty line.
			data = rest
			continue
		}
		values, rest, err := nextLine(rest)
		if err != nil {
			return fmt.Errorf("no values line after %.40q...: %w", names, err)
		}
		data = rest

		proto, nameFields, ok := cutProto(names)
		if !ok {
			return fmt.Errorf("line %.40q... does not start with \"Proto:\"", names)
		}
		vproto, valueFields, ok := cutProto(values)
		if !ok || !bytes.Equal(proto, vproto) {
			return fmt.Errorf("%s names line followed by %.40q, not by its values", proto, values)
		}
		names, values = nameFields, valueFields
		var wanted map[string]int
		for i, w := range want {
			if w.proto == string(proto) {
				wanted = w.fields
				seen |= 1 << i
			}
		}
		count := 0
		for {
			var name, value []byte
			name, names = nextField(names)
			value, values = nextField(values)
			if len(name) == 0 || len(value) == 0 {
				if len(name) != 0 || len(value) != 0 {
					return fmt.Errorf("%s: %d names but %d values", proto,
						count+countFields(name, names), count+countFields(value, values))
				}
				break
			}
			count++
			idx, ok := wanted[string(name)]
			if !ok {
				continue
			}
			if have[idx] {
				return fmt.Errorf("%s: field %s appears twice", proto, name)
			}
			v, err := parseUint(value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", proto, name, err)
			}
			vals[idx], have[idx] = v, true
		}
	}
	for i, w := range want {
		if seen&(1<<i) == 0 {
			return fmt.Errorf("no %s lines", w.proto)
		}
	}
	return nil
}

// countFields counts first (if not empty) and the fields in rest.
func countFields(first, rest []byte) int {
	n := 0
	for f := first; len(f) > 0; f, rest = nextField(rest) {
		n++
	}
	return n
}

// cutProto splits "TcpExt: a b c" into "TcpExt" and " a b c".
func cutProto(line []byte) (proto, rest []byte, ok bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 || bytes.ContainsAny(line[:i], " \t") {
		return nil, nil, false
	}
	return line[:i], line[i+1:], true
}

// Reading and tokenising kernel text files, shared by the host collectors (netstat, sockstat, sysctl, softnet).

// maxProcFile bounds a read: softnet_stat on a 4096-CPU host is about 600 KiB; anything far larger is not a
// file we know.
const maxProcFile = 16 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func getBuf() *[]byte  { return bufPool.Get().(*[]byte) }
func putBuf(b *[]byte) { bufPool.Put(b) }

// procFile is a kernel file kept open between scrapes and re-read with pread from offset 0. Opening a
// /proc/net file costs more than reading it (a path walk through /proc/self and the network namespace: about
// 30 of 37 µs for /proc/net/sockstat here), and the kernel regenerates the content on every read from offset
// 0 (seq_file and sysctl handlers), so a kept descriptor sees current values. Raw syscalls, because os.File
// would add an fstat and allocations per read. A missing file is looked for again on every read, so a
// missing file reads as an error matching os.ErrNotExist each time.
type procFile struct {
	path string
	mu   sync.Mutex
	fd   int // -1 while not open
}

func newProcFile(path string) *procFile { return &procFile{path: path, fd: -1} }

// closeWhenUnreachable closes files once owner (the collector holding them) is garbage; the exporter keeps its
// collectors for its lifetime, tests build many.
func closeWhenUnreachable[T any](owner *T, files ...*procFile) {
	runtime.AddCleanup(owner, func(files []*procFile) {
		for _, f := range files {
			if f.fd >= 0 {
				unix.Close(f.fd)
			}
		}
	}, files)
}

func (f *procFile) descriptor() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fd >= 0 {
		return f.fd, nil
	}
	for {
		fd, err := unix.Open(f.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("opening %s: %w", f.path, err)
		}
		f.fd = fd
		return fd, nil
	}
}

// read reads the whole file into *buf, growing it as needed, and returns the content, which stays valid until
// the next read into buf. Concurrent reads of one procFile are safe: pread does not move a shared offset.
func (f *procFile) read(buf *[]byte) ([]byte, error) {
	fd, err := f.descriptor()
	if err != nil {
		return nil, err
	}
	b := (*buf)[:0]
	defer func() { *buf = b[:0] }() // keep a grown buffer for the next read
	for {
		if len(b) == cap(b) {
			if cap(b) >= maxProcFile {
				return nil, fmt.Errorf("reading %s: larger than %d bytes", f.path, maxProcFile)
			}
			b = append(b, make([]byte, cap(b)+4096)...)[:len(b)]
		}
		n, err := unix.Pread(fd, b[len(b):cap(b)], int64(len(b)))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", f.path, err)
		}
		if n == 0 {
			return b, nil
		}
		b = b[:len(b)+n]
	}
}

var errTruncated = errors.New("truncated: last line has no newline")

// nextLine splits off the first line. The kernel ends every line with a newline, so a last line without one
// means the read was cut short, and parsing it could turn "12345" into a wrong "12".
func nextLine(data []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		return nil, nil, errTruncated
	}
	return data[:i], data[i+1:], nil
}

// nextField returns the first space- or tab-separated field of s and what follows it.
func nextField(s []byte) (field, rest []byte) {
	i := 0
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	j := i
	for j < len(s) && s[j] != ' ' && s[j] != '\t' {
		j++
	}
	return s[i:j], s[j:]
}

var errNumber = errors.New("not a number")

// parseUint parses a decimal counter, rejecting signs, empty input and values beyond uint64. strconv would do
// the same but needs a string, which costs an allocation per field.
func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty", errNumber)
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%w: %q is not an unsigned decimal integer", errNumber, b)
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, fmt.Errorf("%w: %q overflows uint64", errNumber, b)
		}
		v = v*10 + d
	}
	return v, nil
}

// parseInt parses a signed decimal integer.
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, err := parseUint(b)
	if err != nil {
		return 0, err
	}
	if neg {
		if u > 1<<63 {
			return 0, fmt.Errorf("%w: -%s overflows int64", errNumber, b)
		}
		return -int64(u), nil
	}
	if u > 1<<63-1 {
		return 0, fmt.Errorf("%w: %s overflows int64", errNumber, b)
	}
	return int64(u), nil
}

// parseHex parses a hexadecimal number without prefix, as printed by "%08x".
func parseHex(b []byte) (uint64, error) {
	if len(b) == 0 {
		return 0, fmt.Errorf("%w: empty", errNumber)
	}
	if len(b) > 16 {
		return 0, fmt.Errorf("%w: %q overflows uint64", errNumber, b)
	}
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: %q is not hexadecimal", errNumber, b)
		}
		v = v<<4 | uint64(d)
	}
	return v, nil
}
