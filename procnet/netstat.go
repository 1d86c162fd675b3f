package procnet

import (
	"bytes"
	"fmt"
)

// Counter names one kernel counter of /proc/net/netstat (TcpExt) or /proc/net/snmp (Tcp) that this package
// reads. The receive-path TcpExt counters come first, in the order a packet meets them.
type Counter uint8

// The counters read, by kernel name (include/uapi/linux/snmp.h; net/ipv4/proc.c prints them).
const (
	PruneCalled Counter = iota
	RcvPruned
	OfoPruned
	TCPRcvCollapsed
	TCPRcvQDrop
	TCPBacklogDrop
	TCPOFOQueue
	TCPOFODrop
	TCPOFOMerge
	TCPZeroWindowDrop
	TCPRcvCoalesce
	TCPWantZeroWindowAdv
	TCPToZeroWindowAdv
	TCPFromZeroWindowAdv
	TCPWinProbe
	TCPDSACKOldSent
	TCPMemoryPressures
	TCPMemoryPressuresChrono
	TCPAbortOnMemory
	ListenOverflows
	ListenDrops
	InSegs
	RetransSegs
	InErrs
	InCsumErrors
	// NumCounters is the number of counters; Counter values are below it.
	NumCounters
)

// counterInfo says where each counter is: file under /proc/net, protocol line, kernel field name.
var counterInfo = [NumCounters]struct{ file, proto, name string }{
	PruneCalled:              {"netstat", "TcpExt", "PruneCalled"},
	RcvPruned:                {"netstat", "TcpExt", "RcvPruned"},
	OfoPruned:                {"netstat", "TcpExt", "OfoPruned"},
	TCPRcvCollapsed:          {"netstat", "TcpExt", "TCPRcvCollapsed"},
	TCPRcvQDrop:              {"netstat", "TcpExt", "TCPRcvQDrop"},
	TCPBacklogDrop:           {"netstat", "TcpExt", "TCPBacklogDrop"},
	TCPOFOQueue:              {"netstat", "TcpExt", "TCPOFOQueue"},
	TCPOFODrop:               {"netstat", "TcpExt", "TCPOFODrop"},
	TCPOFOMerge:              {"netstat", "TcpExt", "TCPOFOMerge"},
	TCPZeroWindowDrop:        {"netstat", "TcpExt", "TCPZeroWindowDrop"},
	TCPRcvCoalesce:           {"netstat", "TcpExt", "TCPRcvCoalesce"},
	TCPWantZeroWindowAdv:     {"netstat", "TcpExt", "TCPWantZeroWindowAdv"},
	TCPToZeroWindowAdv:       {"netstat", "TcpExt", "TCPToZeroWindowAdv"},
	TCPFromZeroWindowAdv:     {"netstat", "TcpExt", "TCPFromZeroWindowAdv"},
	TCPWinProbe:              {"netstat", "TcpExt", "TCPWinProbe"},
	TCPDSACKOldSent:          {"netstat", "TcpExt", "TCPDSACKOldSent"},
	TCPMemoryPressures:       {"netstat", "TcpExt", "TCPMemoryPressures"},
	TCPMemoryPressuresChrono: {"netstat", "TcpExt", "TCPMemoryPressuresChrono"},
	TCPAbortOnMemory:         {"netstat", "TcpExt", "TCPAbortOnMemory"},
	ListenOverflows:          {"netstat", "TcpExt", "ListenOverflows"},
	ListenDrops:              {"netstat", "TcpExt", "ListenDrops"},
	InSegs:                   {"snmp", "Tcp", "InSegs"},
	RetransSegs:              {"snmp", "Tcp", "RetransSegs"},
	InErrs:                   {"snmp", "Tcp", "InErrs"},
	InCsumErrors:             {"snmp", "Tcp", "InCsumErrors"},
}

// Name is the kernel's name of the counter, e.g. "PruneCalled".
func (c Counter) Name() string { return counterInfo[c].name }

// Proto is the protocol line the counter is on: "TcpExt" or "Tcp".
func (c Counter) Proto() string { return counterInfo[c].proto }

// File is the file under /proc/net the counter is in: "netstat" or "snmp".
func (c Counter) File() string { return counterInfo[c].file }

// Netstat holds the counters of one reading. The zero value has none.
type Netstat struct {
	vals [NumCounters]uint64
	have [NumCounters]bool
}

// Get returns a counter's value, ok false when the file read did not have it (an older kernel, or a file
// not read).
func (n *Netstat) Get(c Counter) (v uint64, ok bool) { return n.vals[c], n.have[c] }

// Set records a counter's value (tests and fixtures build readings with it).
func (n *Netstat) Set(c Counter, v uint64) { n.vals[c], n.have[c] = v, true }

// Reset forgets every value.
func (n *Netstat) Reset() { *n = Netstat{} }

// NetstatFiles are the files under /proc/net that hold the counters, in reading order.
var NetstatFiles = []string{"netstat", "snmp"}

// wantedProtos lists, per file, its protocol lines and for each the wanted field names.
var wantedProtos = func() map[string][]protoFields {
	out := map[string][]protoFields{}
	for c := range NumCounters {
		i := counterInfo[c]
		out[i.file] = addWanted(out[i.file], i.proto, i.name, int(c))
	}
	return out
}()

// protoFields maps the wanted field names of one protocol line to indexes into the caller's value slots.
type protoFields struct {
	proto  string
	fields map[string]int
}

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

// ParseNetstat parses the content of /proc/net/<file> (file "netstat" or "snmp", from NetstatFiles) into n,
// adding to what n holds from the other file. Every protocol line the counters need must be in the file.
func ParseNetstat(file string, data []byte, n *Netstat) error {
	want, ok := wantedProtos[file]
	if !ok {
		return fmt.Errorf("no counters are read from %q", file)
	}
	return parseProtoStats(data, want, n.vals[:], n.have[:])
}

// parseProtoStats parses a file made of line pairs, "Proto: Name1 Name2 ..." then "Proto: v1 v2 ...", as
// /proc/net/netstat and /proc/net/snmp are. For every wanted field it stores the value in vals and sets have.
// Values of fields nobody asked for are not checked (Tcp MaxConn is -1), but every pair must have as many
// values as names, and every protocol in want must have its pair: a file without it is not the file we
// expect.
func parseProtoStats(data []byte, want []protoFields, vals []uint64, have []bool) error {
	var seen uint64 // bit i: want[i] was found
	for len(data) > 0 {
		names, rest, err := NextLine(data)
		if err != nil {
			return err
		}
		if len(bytes.TrimSpace(names)) == 0 { // Linux 2.6 began /proc/net/snmp with an empty line.
			data = rest
			continue
		}
		if len(rest) == 0 {
			return fmt.Errorf("no values line after %.40q...: the file ends after it", names)
		}
		values, rest, err := NextLine(rest)
		if err != nil {
			return fmt.Errorf("values line after %.40q...: %w", names, err)
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
			name, names = NextField(names)
			value, values = NextField(values)
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
			v, err := ParseUint(value)
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
