package sockdiag

import "golang.org/x/sys/unix"

// KernelHasRcvWnd tells whether the running kernel's tcp_info has tcpi_rcv_wnd (6.2+), before any socket
// says so (a caller with no full socket to look up still needs to know whether "no zero window" is an answer).
func KernelHasRcvWnd() bool {
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
