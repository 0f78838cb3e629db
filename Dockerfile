# syntax=docker/dockerfile:1
#
# One image holds the three programs: worker (the entry point), enqueue and odin-sim.
# The binaries are static (CGO_ENABLED=0) and run as an unprivileged user.
#
#   docker build -t odinreset .
#   docker run --rm odinreset --help
#   docker run --rm --entrypoint enqueue odinreset --help

# The builder's Go must be at least the go line of go.mod.
ARG GO_VERSION=1.26
ARG ALPINE_VERSION=3.22

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Download modules in their own layer, so a source change does not fetch them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/ \
	./cmd/worker ./cmd/enqueue ./cmd/odin-sim

# Alpine rather than scratch: its busybox wget runs the compose health checks, and its sh
# lets the demo's odin-sim read its password from a compose secret.
FROM alpine:${ALPINE_VERSION}
RUN apk add --no-cache ca-certificates tzdata \
	&& addgroup -S -g 10001 odinreset \
	&& adduser -S -D -H -u 10001 -G odinreset -s /sbin/nologin odinreset
COPY --from=build /out/ /usr/local/bin/
# A numeric user, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
# The worker's HTTP endpoints (HTTP_ADDR must be :8080 or 0.0.0.0:8080 in a container)
# and odin-sim's default port in the compose file.
EXPOSE 8080 8089
ENTRYPOINT ["/usr/local/bin/worker"]
