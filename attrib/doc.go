// Package attrib tells who owns a socket: the cgroup v2 of a cgroup id from an inet_diag reply (one naming
// policy shared by the sockets and netns collectors, with a bounded negative cache), and the process holding a
// socket inode open (an incremental scan of /proc/<pid>/fd). Every name it returns is valid UTF-8 (Label), so a
// name the kernel hands over verbatim cannot fail a Prometheus collector. It knows nothing of Prometheus.
package attrib
