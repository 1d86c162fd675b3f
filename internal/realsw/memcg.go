package realsw

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockbuf/sockbuf_exporter/internal/testenv"
)

// PortUploads is where the upload server of MemcgTCPLimit listens.
const PortUploads = 8084

// The memory cgroup of MemcgTCPLimit: 300000 bytes of TCP memory (the kernel rounds it down to 299008), shared
// by 20 connections that each need at least one loopback segment's truesize (up to about 64 KiB) at a time.
const (
	memcgTCPLimit    = 300000
	memcgUploadConns = 20
)

// memcgs holds the cgroup Prepare made for each Env, for Run.
var memcgs sync.Map // *Env -> memcgOf

type memcgOf struct{ dir, path string }

// MemcgTCPLimit: Python's ThreadingHTTPServer receives uploads, reading every body as fast as it can, inside a
// cgroup v1 memory cgroup whose TCP memory is limited (memory.kmem.tcp.limit_in_bytes 300000), while 20 curl
// clients outside it upload 460 KB each, one after another. The accepted sockets are charged to the
// server's cgroup (the task that accepted them); their receive allocations beyond the limit are refused
// (memcg1_charge_skmem) and the segments dropped (TCPRcvQDrop), although the reader keeps up. The peak
// (max_usage_in_bytes) passes the limit; usage at a scrape is mostly one page or none.
var MemcgTCPLimit = memcgUploads("memcg-tcp-limit", "Python ThreadingHTTPServer reading uploads as fast as it can in a cgroup v1 memory cgroup with memory.kmem.tcp.limit_in_bytes 300000, 20 curl clients uploading 460 KB in turn", memcgTCPLimit)

// MemcgTCPLimitRaised is MemcgTCPLimit after the fix: the cgroup's TCP memory limit raised to 1 TiB (a limit,
// once written, keeps TCP accounting on; raising it is what an operator does). Nothing is refused or lost.
var MemcgTCPLimitRaised = memcgUploads("memcg-tcp-limit-raised", "MemcgTCPLimit with the cgroup's TCP memory limit raised to 1 TiB", 1<<40)

func memcgUploads(name, doc string, limit int) Scenario {
	return Scenario{
		Name: name,
		Doc:  doc,
		Prepare: func(t testing.TB, e *Env) {
			dir, path := testenv.TCPLimitedMemcg(t, "sbrealsw-memcg-"+e.NS.Name, limit)
			memcgs.Store(e, memcgOf{dir, path})
			t.Cleanup(func() { memcgs.Delete(e) })
		},
		Run: func(ctx context.Context, e *Env, d time.Duration) error {
			v, ok := memcgs.Load(e)
			if !ok {
				return fmt.Errorf("%s: Prepare did not run", name)
			}
			cg := v.(memcgOf)
			stop, err := e.uploadServerIn(cg.dir)
			if err != nil {
				return err
			}
			// The server leaves the cgroup before the test removes it.
			defer stop()
			return e.curlUploadLoops(ctx, URL(PortUploads, "/upload"), memcgUploadConns, d)
		},
	}
}

// uploadServerIn starts scripts/upload_server.py in the namespace, moved into the cgroup directory dir first,
// and returns once it listens; stop kills it and waits for it.
func (e *Env) uploadServerIn(dir string) (stop func(), err error) {
	b, err := scripts.ReadFile("scripts/upload_server.py")
	if err != nil {
		return nil, err
	}
	e.write("upload_server.py", b)
	ctx, cancel := context.WithTimeout(context.Background(), MaxLifetime)
	cmd := e.NS.CommandInCgroup(ctx, dir, Python, filepath.Join(e.Dir, "upload_server.py"))
	cmd.Env = append(os.Environ(), "HOST=127.0.0.1", "PORT="+strconv.Itoa(PortUploads))
	log, err := os.Create(filepath.Join(e.Dir, "upload_server.log"))
	if err != nil {
		cancel()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		cancel()
		log.Close()
		return nil, fmt.Errorf("starting the upload server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(exited) }()
	stop = func() { cancel(); <-exited }
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if strings.Contains(e.Log("upload_server.log"), "listening") {
			return stop, nil
		}
		select {
		case <-exited:
			stop()
			return nil, fmt.Errorf("the upload server exited: %s", e.Log("upload_server.log"))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("the upload server did not listen within 15s: %s", e.Log("upload_server.log"))
		}
	}
}

// curlUploadLoops runs n curl clients in the namespace, each uploading Dir/upload.bin to url again and again
// until d has passed (a sh loop around curl, bounded by d and ctx).
func (e *Env) curlUploadLoops(ctx context.Context, url string, n int, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d+15*time.Second)
	defer cancel()
	script := `end=$(( $(date +%s) + $1 )); while [ "$(date +%s)" -lt "$end" ]; do "$2" -sS -o /dev/null --max-time 10 -H Expect: -T "$3" "$4" || exit 1; done`
	errs := make(chan error, n)
	for range n {
		go func() {
			cmd := e.NS.Command(ctx, "sh", "-c", script, "sh", strconv.Itoa(int(d.Seconds())), e.curl,
				filepath.Join(e.Dir, "upload.bin"), url)
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("curl upload loop: %w: %s", err, out)
				return
			}
			errs <- nil
		}()
	}
	var first error
	for range n {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// foreignMemcgAlert reports whether an alert is about a memory cgroup this test did not make (Prepare records
// each one it makes in memcgs): the exporter sees the whole host's memory hierarchy, where other tests may
// limit and fill cgroups of their own.
func foreignMemcgAlert(labels map[string]string) bool {
	cg, ok := labels["cgroup"]
	if labels["alertname"] != "SockbufCgroupTCPMemoryAtLimit" || !ok {
		return false
	}
	ours := false
	memcgs.Range(func(_, v any) bool {
		ours = v.(memcgOf).path == cg
		return !ours
	})
	return !ours
}
