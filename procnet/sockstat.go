package procnet

import (
	"errors"
	"fmt"
)

// SockstatValue names one value of /proc/net/sockstat ("TCP: inuse 1 orphan 0 tw 1 alloc 1 mem 0").
type SockstatValue uint8

// The values read. Their scope differs (net/ipv4/proc.c, sockstat_seq_show): inuse and tw are counted per
// network namespace, while orphan, alloc and mem are host-wide. Memory is in pages.
const (
	TCPInUse SockstatValue = iota
	TCPOrphan
	TCPTimeWait
	TCPAlloc
	TCPMemPages
	UDPMemPages
	// NumSockstatValues is the number of values.
	NumSockstatValues
)

var sockstatInfo = [NumSockstatValues]struct{ proto, key string }{
	TCPInUse:    {"TCP", "inuse"},
	TCPOrphan:   {"TCP", "orphan"},
	TCPTimeWait: {"TCP", "tw"},
	TCPAlloc:    {"TCP", "alloc"},
	TCPMemPages: {"TCP", "mem"},
	UDPMemPages: {"UDP", "mem"},
}

// Proto and Key say where the value is: the line's protocol and the key before the number.
func (v SockstatValue) Proto() string { return sockstatInfo[v].proto }
func (v SockstatValue) Key() string   { return sockstatInfo[v].key }

// Sockstat holds one reading of /proc/net/sockstat.
type Sockstat struct {
	vals [NumSockstatValues]uint64
	have [NumSockstatValues]bool
}

// Get returns a value, ok false when the file did not have it.
func (s *Sockstat) Get(v SockstatValue) (uint64, bool) { return s.vals[v], s.have[v] }

// Set records a value (tests and fixtures build readings with it).
func (s *Sockstat) Set(v SockstatValue, n uint64) { s.vals[v], s.have[v] = n, true }

var sockstatWant = func() []protoFields {
	var want []protoFields
	for v := range NumSockstatValues {
		want = addWanted(want, sockstatInfo[v].proto, sockstatInfo[v].key, int(v))
	}
	return want
}()

// ParseSockstat parses /proc/net/sockstat, lines of "PROTO: key value key value ...". A TCP line is required,
// since every kernel has one.
func ParseSockstat(data []byte, s *Sockstat) error {
	*s = Sockstat{}
	sawTCP := false
	for len(data) > 0 {
		line, rest, err := NextLine(data)
		if err != nil {
			return err
		}
		data = rest
		proto, kvs, ok := cutProto(line)
		if !ok {
			return fmt.Errorf("line %.40q does not start with \"PROTO:\"", line)
		}
		if string(proto) == "TCP" {
			sawTCP = true
		}
		var wanted map[string]int
		for _, w := range sockstatWant {
			if w.proto == string(proto) {
				wanted = w.fields
			}
		}
		if wanted == nil {
			continue
		}
		for {
			var key, value []byte
			key, kvs = NextField(kvs)
			if len(key) == 0 {
				break
			}
			value, kvs = NextField(kvs)
			if len(value) == 0 {
				return fmt.Errorf("%s: key %s without a value", proto, key)
			}
			idx, ok := wanted[string(key)]
			if !ok {
				continue
			}
			if s.have[idx] {
				return fmt.Errorf("%s: key %s appears twice", proto, key)
			}
			v, err := ParseUint(value)
			if err != nil {
				return fmt.Errorf("%s %s: %w", proto, key, err)
			}
			s.vals[idx], s.have[idx] = v, true
		}
	}
	if !sawTCP {
		return errors.New("no TCP line")
	}
	return nil
}
