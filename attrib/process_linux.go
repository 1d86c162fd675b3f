package attrib

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// ProcessScanner finds the owner of socket inodes by reading /proc/<pid>/fd, incrementally:
//
//   - Refresh, before each dump, lists /proc and stats every /proc/<pid>/fd, whose st_size is the number
//     of open descriptors (Linux 6.2+, proc_fd_getattr in fs/proc/fd.c; 0 before, which reads as "changed").
//     It forgets exited processes and marks as changed the new ones and those whose count moved. It reads
//     no link.
//   - Owner, during the dump, answers from the inode → pid map. The first inode it does not know on a
//     Refresh makes it read the links of the changed processes (once per Refresh), so that a socket born
//     since the last scrape is found on this one. In a steady state, where every socket is known, a scrape
//     reads no link at all.
//   - A process that closed a socket and opened another keeps its count: the new socket is not found among
//     the changed processes. Such a miss makes the next Refresh read every process again (a full pass), at
//     most once per FullRescanMin; so does the passing of FullInterval (a pid reused with the same count, a
//     process that exec'd). An inode that a full pass made after its first miss did not find either (a
//     kernel socket, one held by no process the exporter may see) is not looked for again.
//   - Every pass stops at the deadline given to Refresh: what it did not reach keeps its last known owners,
//     and the pass is counted in Incomplete.
//
// It reads directories with getdents64 into reused buffers and calls readlinkat with the NUL-terminated names
// straight from those buffers, so a pass allocates only for new processes, new names and changed sets. Not
// safe for concurrent use.
type ProcessScanner struct {
	procPath string
	// FullInterval is how often every process's links are read again; 0 reads them on every Refresh.
	FullInterval time.Duration
	// RescanMin is the least time between two full passes that misses ask for (FullRescanMin by default).
	RescanMin time.Duration
	now       func() time.Time

	names   processNames
	procs   map[int32]*procEntry
	owners  map[uint32]owner  // by socket inode
	misses  map[uint32]uint64 // inodes not found, and the Refresh that first missed them
	gen     uint64            // Refresh calls
	fullGen uint64            // the last Refresh that was a full pass
	fullAt  time.Time         // start of the last full pass
	state   struct {          // of the current Refresh
		deadline time.Time
		full     bool // every process is read on this Refresh
		resolved bool // the changed processes were read on this Refresh
		fullDue  bool // a miss asks for a full pass on the next Refresh
	}
	incomplete uint64
	linksRead  uint64

	procBuf []byte // getdents64 of /proc
	fdBuf   []byte // getdents64 of /proc/<pid>/fd
	link    []byte
	path    []byte
	comm    []byte
	pending []uint32 // socket inodes of the process being read
	statx   unix.Statx_t
}

// owner is the process holding a socket, with its name, so that a dump's lookup is one map access.
type owner struct {
	pid, name int32
}

// procEntry is what the scanner knows of a process.
type procEntry struct {
	fds     int64    // st_size of /proc/<pid>/fd when its links were last read; -1 before
	seenFds int64    // st_size at the last Refresh
	name    int32    // index in names
	inodes  []uint32 // socket inodes it held when its links were last read
	seen    uint64   // Refresh that last listed it
	changed bool     // its links must be read again
}

const (
	// DefaultFullInterval is ProcessScanner.FullInterval's default.
	DefaultFullInterval = 5 * time.Minute
	// FullRescanMin is the least time between two full passes that misses ask for.
	FullRescanMin = 30 * time.Second
	maxMissed     = 1 << 16
)

// ErrScanDeadline is returned by Refresh when its deadline passed before it listed every process.
var ErrScanDeadline = errors.New("process scan cut short by its deadline")

// NewProcessScanner returns a scanner of the processes under procPath (/proc).
func NewProcessScanner(procPath string) *ProcessScanner {
	return &ProcessScanner{
		procPath:     procPath,
		FullInterval: DefaultFullInterval,
		RescanMin:    FullRescanMin,
		now:          time.Now,
		names:        newProcessNames(),
		procs:        map[int32]*procEntry{},
		owners:       map[uint32]owner{},
		misses:       map[uint32]uint64{},
		procBuf:      make([]byte, 32<<10),
		fdBuf:        make([]byte, 32<<10),
		link:         make([]byte, 64),
		comm:         make([]byte, 64),
	}
}

// Scan reads every process's links at once, without a deadline: a full pass.
func (p *ProcessScanner) Scan() error {
	p.fullAt = time.Time{}
	return p.Refresh(time.Time{})
}

// LinksRead is how many descriptor links the scanner has read, for tests and benchmarks.
func (p *ProcessScanner) LinksRead() uint64 { return p.linksRead }

// Incomplete is how many passes (Refresh, or the reading of links it led to) failed or were cut short.
func (p *ProcessScanner) Incomplete() uint64 { return p.incomplete }

// Refresh lists the processes before a dump; Owner then reads what changed. deadline (zero: none) bounds
// this Refresh and the reads it leads to. On an error, what the scanner knew stays; Owner goes on
// answering from it.
func (p *ProcessScanner) Refresh(deadline time.Time) error {
	p.gen++
	now := p.now()
	if p.names.full() {
		p.names = newProcessNames()
		clear(p.procs)
		clear(p.owners)
	}
	full := p.fullAt.IsZero() || now.Sub(p.fullAt) >= p.FullInterval ||
		(p.state.fullDue && now.Sub(p.fullAt) >= p.RescanMin)
	p.state.deadline, p.state.full, p.state.resolved = deadline, full, false
	if full {
		p.state.fullDue = false
		p.fullAt, p.fullGen = now, p.gen
	}
	err := p.list()
	if err != nil {
		p.incomplete++
		return err
	}
	for pid, e := range p.procs {
		if e.seen != p.gen {
			p.forget(pid, e)
			delete(p.procs, pid)
		}
	}
	if full {
		// Read everything now, before the dump: the dump then finds every owner known.
		return p.resolve()
	}
	return nil
}

// list reads /proc and stats each /proc/<pid>/fd.
func (p *ProcessScanner) list() error {
	procFD, err := unix.Open(p.procPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p.procPath, err)
	}
	defer unix.Close(procFD)
	st := &p.statx
	for {
		n, err := unix.Getdents(procFD, p.procBuf)
		if err != nil {
			return fmt.Errorf("listing %s: %w", p.procPath, err)
		}
		if n == 0 {
			return nil
		}
		if p.late() {
			// The processes not listed yet would be taken for exited: keep them all.
			for _, e := range p.procs {
				e.seen = p.gen
			}
			return fmt.Errorf("listing %s: %w", p.procPath, ErrScanDeadline)
		}
		// The entries point into procBuf, which the next Getdents overwrites: each is used at once.
		for b := p.procBuf[:n]; len(b) > 0; {
			name, rest, ok := nextDirent(b)
			if !ok {
				break
			}
			b = rest
			pid, ok := parsePid(name)
			if !ok {
				continue
			}
			p.path = pidPath(p.path, name, "fd")
			if statxSize(procFD, p.path, st) != nil {
				continue // exited, or not ours to see: forgotten below
			}
			e := p.procs[pid]
			if e == nil {
				e = &procEntry{fds: -1}
				p.procs[pid] = e
			}
			size := int64(st.Size)
			e.seen, e.seenFds = p.gen, size
			if p.state.full || e.fds != size || size == 0 {
				e.changed = true
			}
		}
	}
}

// late reports whether the current Refresh's deadline has passed.
func (p *ProcessScanner) late() bool {
	return !p.state.deadline.IsZero() && p.now().After(p.state.deadline)
}

// Owner returns the index of the name of the process holding a socket inode, 0 if none was found (see the
// type's comment for when it reads links).
func (p *ProcessScanner) Owner(inode uint32) int32 {
	return p.lookup(inode).name
}

// OwnerPID is Owner with the pid of the process found (0 if none); a socket that several processes hold
// gives one of them.
func (p *ProcessScanner) OwnerPID(inode uint32) (name, pid int32) {
	o := p.lookup(inode)
	return o.name, o.pid
}

func (p *ProcessScanner) lookup(inode uint32) owner {
	if inode == 0 {
		return owner{}
	}
	if o, ok := p.owners[inode]; ok {
		return o
	}
	first, seen := p.misses[inode]
	if seen && first < p.fullGen {
		return owner{} // a full pass since it was first missed did not find it either
	}
	if !p.state.resolved {
		p.resolve() //nolint:errcheck // counted in incomplete; the owners known stay
		if o, ok := p.owners[inode]; ok {
			return o
		}
	}
	switch {
	case !seen:
		// Born after the processes were read, or in a process whose count did not move: the next Refresh's
		// changed processes may have it.
		if len(p.misses) >= maxMissed {
			clear(p.misses)
		}
		p.misses[inode] = p.gen
	case first < p.gen:
		p.state.fullDue = true // still missing after the changed processes were read again
	}
	return owner{}
}

// Name returns a process name by index.
func (p *ProcessScanner) Name(i int32) string { return p.names.name(i) }

// resolve reads the links of the changed processes, once per Refresh, until the deadline.
func (p *ProcessScanner) resolve() error {
	p.state.resolved = true
	var procFD = -1
	defer func() {
		if procFD >= 0 {
			unix.Close(procFD)
		}
	}()
	for pid, e := range p.procs {
		if !e.changed {
			continue
		}
		if p.late() {
			p.incomplete++
			return fmt.Errorf("reading /proc/<pid>/fd: %w", ErrScanDeadline)
		}
		if procFD < 0 {
			var err error
			procFD, err = unix.Open(p.procPath, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			if err != nil {
				p.incomplete++
				return fmt.Errorf("opening %s: %w", p.procPath, err)
			}
		}
		p.readProcess(procFD, pid, e)
	}
	return nil
}

// readProcess reads the links of one process and replaces its sockets in the owners map.
func (p *ProcessScanner) readProcess(procFD int, pid int32, e *procEntry) {
	var num [12]byte
	pidName := strconv.AppendInt(num[:0], int64(pid), 10)
	e.changed = false
	e.fds = e.seenFds
	p.path = pidPath(p.path, pidName, "fd")
	p.pending = p.pending[:0]
	fdDir, err := openat(procFD, p.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC)
	if err == nil {
		p.readLinks(fdDir)
		unix.Close(fdDir)
	}
	p.forget(pid, e)
	if len(p.pending) == 0 {
		e.inodes = e.inodes[:0]
		return
	}
	e.name = p.readComm(procFD, pidName)
	e.inodes = append(e.inodes[:0], p.pending...)
	for _, ino := range e.inodes {
		if _, taken := p.owners[ino]; !taken {
			p.owners[ino] = owner{pid: pid, name: e.name}
		}
	}
}

// forget removes a process's sockets from the owners map.
func (p *ProcessScanner) forget(pid int32, e *procEntry) {
	for _, ino := range e.inodes {
		if p.owners[ino].pid == pid {
			delete(p.owners, ino)
		}
	}
}
