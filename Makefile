# sockbuf_exporter: `make run` runs the exporter on this host, `make test` runs every test.
GO          ?= go
GOOS        ?= linux
GOARCH      ?= $(shell $(GO) env GOARCH)
BUILD_DIR   := .build/$(GOOS)-$(GOARCH)
BIN         := $(BUILD_DIR)/sockbuf_exporter
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo unknown)
REVISION    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
BRANCH      ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/prometheus/common/version
LDFLAGS     := -s -w -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
               -X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(shell id -un)@$(shell hostname) \
               -X $(VERSION_PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# What the tests run besides Go: promtool and the Prometheus server, Alertmanager, node_exporter (the bench
# reference), nft (packet loss for out-of-order pruning), podman (image build), ip/ss/nstat, systemd-analyze;
# clang, llvm (llvm-strip) and libbpf-dev (bpf_helpers.h) build the BPF objects, bpftool checks drop-reason names;
# and the real software of internal/realsw: nginx, curl, Python requests (with Debian's /usr/bin/python3).
# internal/realsw also needs Node.js (`node`, v18 or later), which comes from the machine, not from Debian.
DEB_PACKAGES := prometheus prometheus-alertmanager prometheus-node-exporter nftables podman iproute2 systemd \
                clang llvm libbpf-dev bpftool nginx curl python3-requests
# How much the fuzz target runs inside `make test`: a number of executions, not a duration, because Go
# 1.26's fuzz coordinator can fail a target with a bare "context deadline exceeded" when a duration's deadline
# races its workers (golang/go#75804, fixed in Go 1.27; seen here on FuzzParseSysctl and FuzzParseSnmp with
# no failing input). Run longer by hand with FUZZTIME=10m or FUZZTIME=50000000x. The fuzzer's progress line
# shows 0 execs/sec while a worker minimises a new input (golang/go#51484); minimising is bounded to 2s.
FUZZTIME    ?= 500000x
# The /proc parsers' fuzz targets, each run for PROCNET_FUZZTIME (a few seconds each here).
PROCNET_FUZZ     := FuzzParseNetstat FuzzParseSnmp FuzzParseSockstat FuzzParseSysctl FuzzParseSoftnet
PROCNET_FUZZTIME ?= 150000x
IMAGE       ?= sockbuf_exporter
BASE_IMAGE  ?= quay.io/prometheus/busybox-linux-$(GOARCH):latest

.PHONY: all build run test deps check-format vet lint unit fuzz bench image generate pictures

all: build

build:
	CGO_ENABLED=0 GOOS=$(GOOS) GOARCH=$(GOARCH) $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sockbuf_exporter

# Runs the exporter on this host with its defaults (listens on :10714).
run: build
	$(BIN) $(ARGS)

# Every test: formatting, vet, staticcheck, unit and fixture tests, end-to-end tests against the real kernel in
# network namespaces with a real Prometheus and Alertmanager, and a short fuzz run of the netlink decoder and
# of every /proc parser.
test: deps check-format vet lint unit fuzz

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing" >&2; [ -z "$$CI" ] || exit 1; \
		else apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; fi; \
	fi

check-format:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint:
	$(GO) run $(STATICCHECK) ./...

unit:
	$(GO) test -count=1 -timeout 20m ./...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 2s ./sockdiag
	for f in $(PROCNET_FUZZ); do \
		$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(PROCNET_FUZZTIME) -fuzzminimizetime 2s ./procnet || exit 1; \
	done

# Side-by-side benchmarks against node_exporter and ss; run by hand, they print ratios.
bench: build
	bash collector/bench/host.sh
	bash sockdiag/bench.sh

image: build
	podman build --build-arg ARCH=$(GOARCH) --build-arg OS=$(GOOS) --build-arg BASE=$(BASE_IMAGE) \
		--build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE):$(VERSION) .

# Regenerates what is generated and committed: the BPF objects and their Go bindings (bpf2go, Debian's clang),
# rules, dashboards, then the Kubernetes manifests that embed both (so in that order), and docs/metrics.md.
generate:
	$(GO) generate ./bpf/drops
	$(GO) generate ./deploy/rules ./dashboards
	$(GO) generate ./deploy
	$(GO) generate ./collector

# Draws the dashboards' key panels during internal/realsw's pinned-client scenario (real exporter, real
# Prometheus, the panels' own queries) into docs/img, for docs/dashboards.md. Needs root; about 75 seconds.
pictures:
	$(GO) test -count=1 -run '^TestDashboardPictures$$' ./dashboards -args -pictures=$(CURDIR)/docs/img
