package benchref

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// StatusKiB returns a memory field of /proc/<pid>/status (pid 0: this process), such as VmRSS or VmHWM,
// in KiB.
func StatusKiB(pid int, field string) (int, error) {
	path := "/proc/self/status"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				return 0, fmt.Errorf("%s: %s: %w", path, field, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("%s: no %s", path, field)
}

// Status is StatusKiB of this process formatted for a report ("123456 kB"), or "?" when it is unknown.
func Status(field string) string {
	n, err := StatusKiB(0, field)
	if err != nil {
		return "?"
	}
	return strconv.Itoa(n) + " kB"
}
