package attrib

import (
	"strconv"
	"unicode/utf8"
)

// Label makes a name taken from the system (a cgroup directory, a process's comm, a /run/netns entry) valid
// UTF-8, which Prometheus requires of every label value: the kernel lets any unprivileged user with a
// delegated cgroup subtree or a process of their own choose bytes that are not. Each invalid byte becomes the
// four characters \xHH, so two names that differ only in invalid bytes keep different labels, and a valid
// name is returned as is, without allocating.
func Label(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	b := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\x`...)
			if s[i] < 0x10 {
				b = append(b, '0')
			}
			b = strconv.AppendUint(b, uint64(s[i]), 16)
			i++
			continue
		}
		b = append(b, s[i:i+n]...)
		i += n
	}
	return string(b)
}
