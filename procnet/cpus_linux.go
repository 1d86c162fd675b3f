package procnet

import "fmt"

// PossibleCPUs is the number of CPU ids the running kernel may ever use (nr_cpu_ids), from sysfs's list of
// possible CPUs (e.g. "0-7" or "0,2-5"), read from path (normally /sys/devices/system/cpu/possible). When
// the file cannot be read or parsed it returns MaxCPUs and the error.
func PossibleCPUs(path string) (int, error) {
	buf := GetBuf()
	defer PutBuf(buf)
	data, err := ReadOnce(path, buf)
	if err != nil {
		return MaxCPUs, err
	}
	n, err := parseCPUList(data)
	if err != nil {
		return MaxCPUs, fmt.Errorf("parsing %s: %w", path, err)
	}
	return n, nil
}
