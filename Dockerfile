# The image only packages the static binary that `make build` leaves in .build/<os>-<arch>/ (CGO_ENABLED=0,
# so it needs no libc and runs on any base, `scratch` included). Build it with `make image`, or by hand:
#   make build && podman build --build-arg ARCH=amd64 -t sockbuf_exporter .
# BASE picks the base image; the default has a shell and busybox tools for debugging on a node, while
# `--build-arg BASE=scratch` or gcr.io/distroless/static-debian12:nonroot gives an image with nothing but the binary.
ARG ARCH="amd64"
ARG OS="linux"
ARG BASE="quay.io/prometheus/busybox-${OS}-${ARCH}:latest"
FROM ${BASE}

# ARGs before FROM are out of scope after it: declare them again for COPY and the labels.
ARG ARCH="amd64"
ARG OS="linux"
ARG VERSION=""
ARG REVISION=""
ARG CREATED=""

LABEL org.opencontainers.image.title="sockbuf_exporter" \
      org.opencontainers.image.description="Prometheus exporter showing where Linux drops TCP data for lack of receive-buffer room" \
      org.opencontainers.image.source="https://github.com/sockbuf/sockbuf_exporter" \
      org.opencontainers.image.url="https://github.com/sockbuf/sockbuf_exporter" \
      org.opencontainers.image.documentation="https://github.com/sockbuf/sockbuf_exporter/blob/main/docs/deployment.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"

COPY .build/${OS}-${ARCH}/sockbuf_exporter /bin/sockbuf_exporter

EXPOSE 10714
# Numeric, so the image also works on bases without /etc/passwd (scratch, distroless). The exporter needs no
# privilege in its default mode: /proc/net, /proc/sys/net and inet_diag dumps are readable by any user.
USER 65534:65534
ENTRYPOINT ["/bin/sockbuf_exporter"]
