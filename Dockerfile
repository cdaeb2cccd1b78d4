# syntax=docker/dockerfile:1
#
# stompgate: one static Go binary on distroless/static, running as UID 65532.
#
#   docker build --build-arg VERSION="$(git describe --tags --always --dirty)" -t stompgate .
#
# `make image-check` (scripts/image-check.sh) proves this file without a Docker
# engine: it reads the `go build` RUN below and executes it verbatim (same
# flags, same VERSION), checks the result is static, stripped and trimmed,
# and runs it with nothing but that binary and STOMPGATE_UPSTREAM_URL, as
# UID 65532. Keep one RUN with `go build`, keep the final stage to the lines
# image-check knows (COPY of /out/stompgate, USER, EXPOSE, ENTRYPOINT, LABEL,
# ARG): anything else makes image-check fail rather than drift.

# Build on the builder's own platform and cross-compile (CGO_ENABLED=0 needs
# no C toolchain for the target). Go minor version = go.mod's `go` line.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
# Module cache layer: only re-downloaded when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/stompgate ./cmd/stompgate

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), /tmp,
# tzdata; no shell, no libc, no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="stompgate" \
      org.opencontainers.image.description="STOMP-aware WebSocket reverse proxy" \
      org.opencontainers.image.source="https://github.com/stompgate/stompgate" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/stompgate /stompgate
# Numeric, so that Kubernetes runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
# 8090: clients (STOMPGATE_LISTEN_ADDR); 9095: admin (STOMPGATE_ADMIN_ADDR):
# /livez, /readyz, /metrics, POST /drain.
EXPOSE 8090 9095
# No HEALTHCHECK: it would need a shell or curl, which distroless does not
# have, and Kubernetes ignores it anyway. Kubernetes probes hit the admin
# port instead (httpGet /livez and /readyz on 9095; see docs/deploy/).
# SIGTERM (the default stop signal) starts the graceful drain.
ENTRYPOINT ["/stompgate"]
