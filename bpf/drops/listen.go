//go:build linux

package drops

import (
	"fmt"
)

// portSet is a bitset of the 65536 ports.
type portSet [65536 / 64]uint64

func (s *portSet) has(p uint16) bool { return s[p/64]&(1<<(p%64)) != 0 }
func (s *portSet) add(p uint16)      { s[p/64] |= 1 << (p % 64) }

// SetListening tells the programs the listening TCP ports of the network namespace netns (its inode number,
// see NetNSInode), replacing what an earlier call said about it: from now on a socket of that namespace
// whose local port is among them is a server of that port, any other socket a client of its remote port,
// the rule of the sockets collector. Sockets of namespaces never described get RoleUnknown and port 0;
// listening and request sockets are always servers of their own port. Only the difference to the last call
// goes to the kernel, so calling it every scrape with the sockets collector's ports is cheap. At most 65536
// (namespace, port) pairs are held in all.
func (t *Tracer) SetListening(netns uint32, ports []uint16) error {
	next := new(portSet)
	for _, p := range ports {
		next.add(p)
	}
	prev := t.listen[netns]
	if prev == nil {
		prev = new(portSet)
	}
	var add, del []dropsListenKey
	for w := range next {
		if next[w] == prev[w] {
			continue
		}
		for b := range 64 {
			p := uint16(w*64 + b)
			switch n, o := next.has(p), prev.has(p); {
			case n && !o:
				add = append(add, dropsListenKey{Netns: netns, Port: p})
			case o && !n:
				del = append(del, dropsListenKey{Netns: netns, Port: p})
			}
		}
	}
	// Ports go in before the namespace is marked known, so that its first drops are never taken for a
	// client's.
	if len(add) > 0 {
		if _, err := t.listening.BatchUpdate(add, make([]uint8, len(add)), nil); err != nil {
			return fmt.Errorf("adding %d listening ports of netns %d: %w", len(add), netns, err)
		}
	}
	if len(del) > 0 {
		if _, err := t.listening.BatchDelete(del, nil); err != nil {
			return fmt.Errorf("removing %d listening ports of netns %d: %w", len(del), netns, err)
		}
	}
	t.listen[netns] = next
	if err := t.knownNetNS.Put(netns, uint8(1)); err != nil {
		return fmt.Errorf("marking netns %d described: %w", netns, err)
	}
	return nil
}

// ForgetNetNS removes what SetListening said about a namespace that is gone; its sockets (if any remain)
// get RoleUnknown again.
func (t *Tracer) ForgetNetNS(netns uint32) error {
	prev := t.listen[netns]
	if prev == nil {
		return nil
	}
	if err := t.knownNetNS.Delete(netns); err != nil {
		return fmt.Errorf("forgetting netns %d: %w", netns, err)
	}
	var del []dropsListenKey
	for p := range 65536 {
		if prev.has(uint16(p)) {
			del = append(del, dropsListenKey{Netns: netns, Port: uint16(p)})
		}
	}
	if len(del) > 0 {
		if _, err := t.listening.BatchDelete(del, nil); err != nil {
			return fmt.Errorf("removing listening ports of netns %d: %w", netns, err)
		}
	}
	delete(t.listen, netns)
	return nil
}
