//go:build linux

// Command sockbuf_exporter exports the state of the kernel's TCP receive buffers to Prometheus: prune and
// collapse counters, TCP memory against tcp_mem, the buffer sysctls, softnet drops and per-socket queues.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/common/promslog/flag"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/sockbuf/sockbuf_exporter/attrib"
	"github.com/sockbuf/sockbuf_exporter/collector"
	"github.com/sockbuf/sockbuf_exporter/metricshandler"
)

// defaultPort is ours alone: above the crowded 9xxx exporter range and clear of well-known services
// (webmin 10000, zabbix 10050/10051, amanda 10080, Kubernetes 10248-10259, nbd 10809, Thanos 1090x).
const defaultPort = ":10714"

func main() {
	app := kingpin.New("sockbuf_exporter", "Exports where and why Linux drops TCP data for lack of receive-buffer room.")
	var (
		metricsPath   = app.Flag("web.telemetry-path", "Path under which to expose metrics.").Default("/metrics").String()
		maxRequests   = app.Flag("web.max-requests", "Maximum number of parallel scrape requests; more get HTTP 503. Concurrent scrapes share each collector's run, so a waiting scrape costs little. 0 disables the limit.").Default("100").Int()
		maxAge        = app.Flag("collector.max-result-age", "A collector's result younger than this is served again to a later scrape instead of reading the kernel again (the values are then that old); 0 shares only a run in progress, which concurrent scrapes always do.").Default("0s").Duration()
		idleTimeout   = app.Flag("web.idle-timeout", "How long the server keeps an idle keep-alive connection open; each holds a descriptor and a goroutine. Prometheus reuses its connection between scrapes, so keep it above the scrape interval.").Default("2m").Duration()
		headerTimeout = app.Flag("web.read-header-timeout", "How long a client may take to send a request's headers; a slower one (slowloris) is disconnected.").Default("10s").Duration()
		timeoutOffset = app.Flag("web.timeout-offset", "Time kept back from Prometheus' scrape timeout (X-Prometheus-Scrape-Timeout-Seconds) so the answer arrives in time.").Default("500ms").Duration()
		procPath      = app.Flag("path.procfs", "procfs mountpoint; /host/proc in a container that mounts the host's /proc there.").Default("/proc").String()
		maxGroups     = app.Flag("collector.sockets.max-groups", "Most socket groups (role, port, cgroup, process) exported, at least 2; the rest fold into port=\"other\", one group per role (sockbuf_socket_groups_folded counts them).").Default(fmt.Sprint(collector.DefaultMaxGroups)).Int()
		fullRatio     = app.Flag("collector.sockets.full-ratio", "rmem_alloc/rcvbuf at or above which a socket counts as full, in (0, 2].").Default(fmt.Sprint(collector.DefaultFullRatio)).Float64()
		states        = app.Flag("collector.sockets.states", "Comma-separated TCP states to dump, ss names (established,syn-sent,syn-recv,fin-wait-1,fin-wait-2,time-wait,closed,close-wait,last-ack,closing) or all. Empty: every state that holds memory (not time-wait or syn-recv). LISTEN sockets are always dumped.").Default("").String()
		tcpInfo       = app.Flag("collector.sockets.tcp-info", "Ask the kernel for tcp_info with each socket, for sockbuf_rcv_window_zero_sockets with the netlink engine (kernel 6.2+; the bpf engine always has it); makes the dump slower (see the README's benchmarks).").Default("false").Bool()
		cgroupAttr    = app.Flag("collector.sockets.cgroup", "Label socket groups with the owning cgroup v2's directory name (e.g. nginx.service), from the cgroup id in each inet_diag reply and a cached walk of the hierarchy.").Default("true").Bool()
		processAttr   = app.Flag("collector.sockets.process", "Label socket groups with the owning process name (comm), found by reading the /proc/<pid>/fd links of the host's processes: all of them on the first scrape and every 5 minutes, in between only those of processes whose descriptor count changed, when a socket is new. A scan that fails or runs out of time leaves process empty (sockbuf_sockets_process_scans_incomplete_total). Needs root or CAP_SYS_PTRACE to see other users' processes.").Default("false").Bool()
		cgroupLabel   = app.Flag("collector.sockets.cgroup-label", "How a cgroup becomes the cgroup label (and the netns collector's netns label): stable, the Kubernetes pod's directory (kubepods-…-pod<uid>.slice, pod<uid>) or the systemd service unit on the path, else the cgroup's own directory, so that a restarted container keeps its series; leaf, always the cgroup's own directory (cri-containerd-<id>.scope), which changes on every container restart. See docs/cardinality.md.").Default("stable").Enum("stable", "leaf")
		cgroupRoot    = app.Flag("collector.sockets.cgroup-root", "Mount point of the cgroup v2 hierarchy. Empty: found in /proc/self/mountinfo (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts). Set it when /sys/fs/cgroup is not visible, e.g. under `ip netns exec`, which remounts /sys, or shows a cgroup namespace only (a pod: /host/sys/fs/cgroup). The memcg collector and diagnose read memory cgroups there too (its memory/ for a v1 hierarchy).").Default("").String()
		engine        = app.Flag("collector.sockets.engine", "How the sockets collector reads the sockets: netlink (inet_diag dumps), bpf (an iter/tcp BPF iterator that sums per group in the kernel, adding sockbuf_rcvbuf_locked_* and always sockbuf_rcv_window_zero_sockets; needs BTF and CAP_BPF+CAP_PERFMON, no --collector.sockets.process) or auto (bpf when it loads and --collector.sockets.process is off, else netlink; the log says which and why). Also used by --collector.netns.sockets.").Default(collector.EngineAuto).Enum(collector.EngineAuto, collector.EngineBPF, collector.EngineNetlink)
		netnsMax      = app.Flag("collector.netns.max-namespaces", "Most network namespaces the netns collector exports (at least 1), those with the most harm: data lost (TCPRcvQDrop, OfoPruned, RcvPruned, TCPBacklogDrop), then collapsing, then PruneCalled; the rest are counted in sockbuf_netns_namespaces_skipped.").Default("100").Int()
		netnsSockets  = app.Flag("collector.netns.sockets", "Also dump the TCP sockets of every namespace the netns collector exports (sockbuf_netns_sockets, _recv_queue_bytes, _rcvbuf_full_sockets): one sock_diag client per namespace, opened inside it with setns, which needs CAP_SYS_ADMIN besides what --collector.netns needs; a namespace it cannot enter is counted in sockbuf_netns_socket_dump_errors_total.").Default("false").Bool()
		bpfOwnNetNS   = app.Flag("collector.bpf.own-netns", "Count only the sockets (and the drops without a socket on devices) of the exporter's own network namespace; otherwise the bpf collector counts every namespace's, where sockets of other namespaces get role=\"unknown\" and are told apart by cgroup.").Default("false").Bool()
		bpfMapEntries = app.Flag("collector.bpf.map-entries", "Size of the bpf collector's kernel map of drop groups (distinct reason, role, port, cgroup, rcvbuf_locked since start); drops of groups beyond it are counted in sockbuf_bpf_map_full_events_total. 0: 16384.").Default("0").Int()
		memcgMax      = app.Flag("collector.memcg.max-cgroups", "Most memory cgroups the memcg collector exports (at least 1), those closest to their limit; the rest are counted in sockbuf_memcg_cgroups_skipped.").Default(fmt.Sprint(collector.DefaultMemcgMaxCgroups)).Int()
		netnsNamed    = app.Flag("collector.netns.named-dir", "Where `ip netns add` bind-mounts named network namespaces, whose names the netns collector uses; /host/run/netns in a container that mounts the host's there.").Default("/run/netns").String()
	)
	toolkitFlags := kingpinflag.AddFlags(app, defaultPort)
	diag := addDiagnose(app)

	enabled := map[string]*bool{}
	for _, c := range collector.Available() {
		state := "disabled"
		if c.DefaultEnabled {
			state = "enabled"
		}
		enabled[c.Name] = app.Flag("collector."+c.Name, fmt.Sprintf("Enable the %s collector: %s (default: %s).", c.Name, c.Help, state)).
			Default(fmt.Sprint(c.DefaultEnabled)).Bool()
	}

	logConfig := &promslog.Config{}
	flag.AddFlags(app, logConfig)
	if version.Version == "" {
		// Built without `make` (go run, go install ...@vX): the module version, "(devel)" for a checkout.
		if bi, ok := debug.ReadBuildInfo(); ok {
			version.Version = bi.Main.Version
		}
	}
	app.Version(version.Print("sockbuf_exporter"))
	app.HelpFlag.Short('h')
	command := kingpin.MustParse(app.Parse(os.Args[1:]))
	logger := promslog.New(logConfig)
	owners := collector.Config{ProcPath: *procPath, Sockets: collector.SocketsConfig{
		CgroupAttribution: *cgroupAttr, CgroupRoot: *cgroupRoot, CgroupLabel: cgroupPolicy(*cgroupLabel)}}
	if command == diag.cmd.FullCommand() {
		os.Exit(runDiagnose(diag, samplerConfig(owners, *fullRatio, *maxGroups, *diag.tcpInfo, *diag.procs, logger), os.Stdout, os.Stderr))
	}

	var names []string
	for name, on := range enabled {
		if *on {
			names = append(names, name)
		}
	}
	cfg := collector.Config{
		ProcPath:     *procPath,
		MaxResultAge: *maxAge,
		Sockets: collector.SocketsConfig{
			MaxGroups:          *maxGroups,
			FullRatio:          *fullRatio,
			States:             *states,
			TCPInfo:            *tcpInfo,
			CgroupAttribution:  *cgroupAttr,
			ProcessAttribution: *processAttr,
			CgroupRoot:         *cgroupRoot,
			Engine:             *engine,
			CgroupLabel:        cgroupPolicy(*cgroupLabel),
		},
		Netns: collector.NetnsConfig{MaxNamespaces: *netnsMax, NamedDir: *netnsNamed, Sockets: *netnsSockets},
		BPF:   collector.BPFConfig{OwnNetNS: *bpfOwnNetNS, MapEntries: *bpfMapEntries},
		Memcg: collector.MemcgConfig{MaxCgroups: *memcgMax},
	}
	exporter, err := collector.New(cfg, names, logger)
	if err != nil {
		logger.Error("cannot start", "err", err)
		os.Exit(1)
	}
	if w := collector.NetnsConfigWarning(cfg, names); w != "" {
		logger.Warn(w)
	}
	logger.Info("starting sockbuf_exporter", "version", version.Info(), "build_context", version.BuildContext(),
		"collectors", strings.Join(exporter.Names(), ","))

	base := prometheus.NewRegistry()
	base.MustRegister(
		versioncollector.NewCollector("sockbuf"),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	http.Handle(*metricsPath, metricshandler.New(exporter, base, metricshandler.Opts{
		MaxRequests: *maxRequests, TimeoutOffset: *timeoutOffset,
	}, logger))
	links := []web.LandingLinks{{Address: *metricsPath, Text: "Metrics"}}
	if *metricsPath == "/diagnose" {
		*diag.interval = 0 // the metrics own the path
	}
	// /diagnose names processes when the sockets collector does (--collector.sockets.process).
	if s := startDiagnoseSampler(diag, samplerConfig(owners, *fullRatio, *maxGroups, *diag.tcpInfo, *processAttr, logger), logger); s != nil {
		http.Handle("/diagnose", diagnoseHandler(s, *diag.window, *diag.interval, logger))
		links = append(links, web.LandingLinks{Address: "/diagnose", Text: "Diagnose (why is this host pruning?)"})
	}
	if *metricsPath != "/" {
		landing, err := web.NewLandingPage(web.LandingConfig{
			Name:        "sockbuf_exporter",
			Description: "Where and why Linux drops TCP data for lack of receive-buffer room",
			Version:     version.Info(),
			Links:       links,
		})
		if err != nil {
			logger.Error("building landing page", "err", err)
			os.Exit(1)
		}
		http.Handle("/", landing)
	}

	server := &http.Server{
		// A scrape is a GET without a body: its request has no reason to take long, and idle keep-alive
		// connections are closed so that they cannot pile up (each holds a descriptor and a goroutine).
		ReadHeaderTimeout: *headerTimeout,
		ReadTimeout:       max(*headerTimeout, 30*time.Second),
		IdleTimeout:       *idleTimeout,
		// The longest scrape budget the handler grants, plus time to write the answer.
		WriteTimeout: metricshandler.MaxScrapeTimeout + 30*time.Second,
		// The server's own complaints (accept failing for lack of descriptors, TLS handshake errors) go to
		// the same log as the rest, not to stderr in another format.
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelError),
	}
	// SIGTERM and SIGINT stop the server and close the collectors, so that the bpf collector's programs are
	// detached by the exporter and not only by its exit.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		sig := <-stop
		logger.Info("shutting down", "signal", sig.String())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		server.Shutdown(ctx) //nolint:errcheck // connections still open at the deadline are cut by the exit
	}()
	if err := web.ListenAndServe(server, toolkitFlags, logger); err != nil && !errors.Is(err, http.ErrServerClosed) {
		logger.Error("serving", "err", err)
		exporter.Close()
		os.Exit(1)
	}
	if err := exporter.Close(); err != nil {
		logger.Error("closing collectors", "err", err)
		os.Exit(1)
	}
}

// cgroupPolicy maps --collector.sockets.cgroup-label, which kingpin has checked, to its policy.
func cgroupPolicy(s string) attrib.CgroupPolicy {
	p, _ := attrib.ParseCgroupPolicy(s)
	return p
}
