//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/sockbuf/sockbuf_exporter/bpf/drops"
	"github.com/sockbuf/sockbuf_exporter/bpf/sockiter"
	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/diagnose"
	"github.com/sockbuf/sockbuf_exporter/evidence"
	"github.com/sockbuf/sockbuf_exporter/memcg"
)

// diagnoseFlags are the `diagnose` command's flags and the exporter's /diagnose flags.
type diagnoseFlags struct {
	cmd      *kingpin.CmdClause
	duration *time.Duration
	format   *string
	bpf      *bool
	procs    *bool

	interval *time.Duration // the exporter's background sampler; 0 disables /diagnose
	window   *time.Duration
	tcpInfo  *bool
}

// addDiagnose adds the `diagnose` command, the default `serve` command and the flags of /diagnose to app.
func addDiagnose(app *kingpin.Application) *diagnoseFlags {
	app.Command("serve", "Run the exporter (the default).").Default()
	f := &diagnoseFlags{cmd: app.Command("diagnose",
		"Watch this network namespace for --duration, then name what is wrong with TCP receive buffers, where, what to change and the PromQL that shows it helped; exit 0 with the findings printed, 1 on an internal error.")}
	f.duration = f.cmd.Flag("duration", "How long to watch; readings are taken about every tenth of it (at least 100ms, at most 2s apart).").Default("10s").Duration()
	f.format = f.cmd.Flag("format", "Output: text for a person, json for the contract of docs/diagnose.md.").Default("text").Enum("text", "json")
	f.bpf = f.cmd.Flag("bpf", "Load the bpf drop tracer and socket iterator for the run (needs CAP_BPF and CAP_PERFMON, and the kernel's BTF), to count every receive drop by reason and socket group and read which sockets have SO_RCVBUF set; without them the findings say what they could not tell.").Default("true").Bool()
	f.procs = f.cmd.Flag("processes", "Name the process holding each socket group (reading /proc/<pid>/fd links, as ss -p does) and read the memory cgroup its sockets are charged to (socket memory and its limit, cgroup v1 memory.kmem.tcp.* or v2 memory.*).").Default("true").Bool()
	f.interval = app.Flag("diagnose.interval", "How often the exporter takes a reading (counters, sysctls, two socket dumps) for /diagnose; 0 disables /diagnose.").Default("15s").Duration()
	f.window = app.Flag("diagnose.window", "The window /diagnose diagnoses: the readings of this last stretch of time, kept in memory.").Default("5m").Duration()
	f.tcpInfo = app.Flag("diagnose.tcp-info", "Check the advertised window of the full sockets in the readings of /diagnose and the diagnose command (one tcp_info lookup per full socket, kernel 6.2+), to tell a slow reader by its zero windows.").Default("true").Bool()
	return f
}

// samplerConfig is the evidence configuration shared by the command and the endpoint. Its socket groups are
// split by cgroup, named as the sockets collector names them (owners: the procfs and cgroup flags).
// With processes, the groups are also split by process (read from /proc/<pid>/fd, as the sockets collector's
// --collector.sockets.process does) and the memory cgroups of those processes are read.
func samplerConfig(owners collector.Config, fullRatio float64, maxGroups int, tcpInfo, processes bool, logger *slog.Logger) evidence.Config {
	cfg := evidence.Config{ProcPath: owners.ProcPath, FullRatio: fullRatio, MaxGroups: maxGroups, TCPInfo: tcpInfo, Processes: processes}
	if r := collector.CgroupResolver(owners, logger); r != nil {
		cfg.CgroupName = r.Name
	}
	if processes {
		r, err := memcg.Open(owners.ProcPath, owners.Sockets.CgroupRoot)
		if err != nil {
			logger.Info("diagnose: socket memory of memory cgroups not read", "err", err)
		} else {
			cfg.Memcg = r
		}
	}
	return cfg
}

// runDiagnose is the `diagnose` command: readings for the duration, then the report on stdout. It returns
// the exit code.
func runDiagnose(f *diagnoseFlags, cfg evidence.Config, stdout, stderr io.Writer) int {
	d := max(*f.duration, 0)
	interval := min(max(d/10, 100*time.Millisecond), 2*time.Second)
	cfg.Readings = int(d/interval) + 2
	cfg.ProcessRescan = interval
	if *f.bpf {
		if t, ns, err := openTracer(); err != nil {
			fmt.Fprintf(stderr, "sockbuf_exporter diagnose: going on without the bpf drop tracer: %v\n", err)
		} else {
			defer t.Close()
			cfg.Tracer, cfg.TracerNetNS = t, ns
		}
		// The socket iterator reads the SO_RCVBUF lock bit of every socket: pinned or not is then exact
		// even for a group that dropped nothing in the window.
		if e, err := sockiter.Open(sockiter.Options{Cgroups: cfg.CgroupName != nil}); err != nil {
			fmt.Fprintf(stderr, "sockbuf_exporter diagnose: going on without the bpf socket iterator (SO_RCVBUF lock bits): %v\n", err)
		} else {
			defer e.Close()
			cfg.Locks = e
		}
	}
	s := evidence.New(cfg)
	defer s.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := s.Sample(ctx); err != nil {
		fmt.Fprintln(stderr, "sockbuf_exporter diagnose:", err)
		return 1
	}
	for next := start.Add(interval); ; next = next.Add(interval) {
		if next.After(start.Add(d)) {
			next = start.Add(d)
		}
		select {
		case <-ctx.Done():
			fmt.Fprintln(stderr, "sockbuf_exporter diagnose: interrupted")
			return 1
		case <-time.After(time.Until(next)):
		}
		if err := s.Sample(ctx); err != nil {
			fmt.Fprintln(stderr, "sockbuf_exporter diagnose:", err)
			return 1
		}
		if !next.Before(start.Add(d)) {
			break
		}
	}
	for _, p := range s.Problems(time.Time{}) {
		fmt.Fprintln(stderr, "sockbuf_exporter diagnose: warning:", p)
	}
	ev := s.Evidence(0)
	if !ev.Sources.Netstat || ev.Samples < 2 {
		// Without the TCP counters or two socket dumps nearly every rule is blind: an empty report would
		// read as "all is well".
		fmt.Fprintln(stderr, "sockbuf_exporter diagnose: cannot diagnose without the TCP counters (--path.procfs) and two socket dumps")
		return 1
	}
	rep := diagnose.Diagnose(ev)
	if err := writeReport(stdout, rep, *f.format); err != nil {
		fmt.Fprintln(stderr, "sockbuf_exporter diagnose: writing the report:", err)
		return 1
	}
	return 0
}

// openTracer loads the bpf drop tracer, counting this network namespace's drops only.
func openTracer() (*drops.Tracer, uint32, error) {
	ns, err := drops.OwnNetNS()
	if err != nil {
		return nil, 0, err
	}
	t, err := drops.Open(drops.Options{NetNS: ns})
	if err != nil {
		return nil, 0, err
	}
	return t, ns, nil
}

func writeReport(w io.Writer, rep diagnose.Report, format string) error {
	if format == "json" {
		return diagnose.WriteJSON(w, rep)
	}
	return diagnose.WriteText(w, rep)
}

// diagnoseHandler serves /diagnose from the background sampler's readings of the last window: text, or the
// JSON contract with ?format=json. Until two readings exist there is no window to diagnose: 503.
func diagnoseHandler(s *evidence.Sampler, window, interval time.Duration, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := r.URL.Query().Get("format")
		switch format {
		case "":
			format = "text"
		case "text", "json":
		default:
			http.Error(w, "format must be text or json", http.StatusBadRequest)
			return
		}
		ev := s.Evidence(window)
		if ev.Samples < 2 {
			w.Header().Set("Retry-After", strconv.Itoa(int(max(interval, time.Second)/time.Second)))
			http.Error(w, "not enough readings yet: /diagnose needs two socket dumps in the window (--diagnose.interval apart)", http.StatusServiceUnavailable)
			return
		}
		var b bytes.Buffer
		if err := writeReport(&b, diagnose.Diagnose(ev), format); err != nil {
			logger.Error("rendering /diagnose", "err", err)
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if format == "json" {
			w.Header().Set("Content-Type", "application/json")
		} else {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.Write(b.Bytes()) //nolint:errcheck // the client went away
	})
}

// maxReadings bounds the memory of /diagnose's readings (each at most --collector.sockets.max-groups groups
// and listening ports).
const maxReadings = 2000

// startDiagnoseSampler starts the background sampler of /diagnose, sized for the window, and returns it (nil
// when disabled).
func startDiagnoseSampler(f *diagnoseFlags, cfg evidence.Config, logger *slog.Logger) *evidence.Sampler {
	if *f.interval <= 0 {
		return nil
	}
	cfg.Readings = int(*f.window / *f.interval) + 2
	if cfg.Readings > maxReadings {
		logger.Warn("diagnose: --diagnose.window holds too many readings at this --diagnose.interval; keeping the last ones only",
			"readings", cfg.Readings, "kept", maxReadings)
		cfg.Readings = maxReadings
	}
	s := evidence.New(cfg)
	go s.Run(context.Background(), *f.interval, logger)
	return s
}
