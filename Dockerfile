# syntax=docker/dockerfile:1
# The User Service image: a Go build stage, then a small Debian runtime that runs the
# static binary as an unprivileged user. Migrations are embedded in the binary.
#
#   docker build -t userservice .        (or: docker compose up --build)

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
# go.mod may ask for a newer patch release than the image ships; let go fetch it.
ENV GOTOOLCHAIN=auto CGO_ENABLED=0 GOFLAGS=-buildvcs=false
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/userservice ./cmd/userservice

FROM debian:12-slim
# tzdata: timezone preferences are validated against the IANA database.
# curl: for the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin userservice
COPY --from=build /out/userservice /usr/local/bin/userservice
USER 10001:10001
ENV HOST=0.0.0.0 PORT=3002 NODE_ENV=production
EXPOSE 3002
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD curl -fsS -o /dev/null http://127.0.0.1:3002/health/live || exit 1
# SIGTERM makes the service drain and exit 0 (see the contract's durability section).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/userservice"]
