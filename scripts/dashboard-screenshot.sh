#!/usr/bin/env bash
# Takes a screenshot of the asynqmon queues page that the worker serves at /monitoring/,
# with headless Chromium, and checks that the rendered page lists the expected queues.
#
# Two modes:
#   dashboard-screenshot.sh --url http://127.0.0.1:8080/monitoring/ [options]
#       shoots a running worker's dashboard; the login comes from MONITORING_USER and
#       MONITORING_PASSWORD (or MONITORING_PASSWORD_FILE).
#   dashboard-screenshot.sh [options]
#       builds the worker, odin-sim and enqueue, and starts a private redis-server on a
#       free loopback port from 6391 to 6399, the Odin simulator and one worker. It submits
#       three jobs: web passwords of 2,000 users at default priority, their voicemail
#       passcodes at low priority, and one SIP password at high priority. It shoots the
#       dashboard while they run and stops everything it started on exit.
#
# Options:
#   --url URL        dashboard URL, without credentials (default: start a stack, as above)
#   --out FILE       PNG to write (default docs/img/dashboard-queues.png)
#   --dom FILE       also save the rendered HTML there
#   --expect TEXT    text the rendered page must contain; repeatable
#                    (default: reset-default)
#
# Needs chromium (Debian package "chromium"; set CHROMIUM to use another binary), and for
# the self-contained mode also go, redis-server, redis-cli and curl.
#
# NOTE: Chromium reads the dashboard password from the URL on its command line, where other
# local users can see it with ps while the screenshot runs. Use a dashboard password that
# protects nothing else; the self-contained mode makes a random one.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

cd "$(dirname "$0")/.."

URL=""
OUT="docs/img/dashboard-queues.png"
DOM=""
EXPECT=()
while [[ $# -gt 0 ]]; do
	case "$1" in
	--url) URL="$2"; shift 2 ;;
	--out) OUT="$2"; shift 2 ;;
	--dom) DOM="$2"; shift 2 ;;
	--expect) EXPECT+=("$2"); shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "dashboard-screenshot: unknown argument $1; see --help" >&2; exit 2 ;;
	esac
done
if [[ ${#EXPECT[@]} -eq 0 ]]; then
	EXPECT=(reset-default)
fi

CHROMIUM="${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}"
if [[ -z "$CHROMIUM" ]]; then
	echo "dashboard-screenshot: chromium not found: install it (apt-get install chromium) or set CHROMIUM" >&2
	exit 3
fi

WORK="$(mktemp -d)"
PIDS=()
REDIS_PORT=""
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n "$REDIS_PORT" ]]; then
		redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# port_free reports whether nothing listens on 127.0.0.1:$1.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# first_free_port prints the first free port from $1 to $2.
first_free_port() {
	local port
	for port in $(seq "$1" "$2"); do
		if port_free "$port"; then
			echo "$port"
			return 0
		fi
	done
	echo "dashboard-screenshot: no free port from $1 to $2" >&2
	return 1
}

# wait_for runs "$@" every 0.2 s until it succeeds, for at most $TIMEOUT seconds.
wait_for() {
	local what="$1"
	shift
	local deadline=$((SECONDS + ${TIMEOUT:-30}))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			echo "dashboard-screenshot: timed out waiting for $what" >&2
			return 1
		fi
		sleep 0.2
	done
}

# start_stack starts redis-server, odin-sim and a worker, submits the demo jobs, and sets
# URL, MONITORING_USER and MONITORING_PASSWORD.
start_stack() {
	local tool
	for tool in go redis-server redis-cli curl; do
		command -v "$tool" >/dev/null || { echo "dashboard-screenshot: $tool not found" >&2; exit 3; }
	done

	echo "dashboard-screenshot: building worker, odin-sim and enqueue" >&2
	go build -o "$WORK/bin/" ./cmd/worker ./cmd/odin-sim ./cmd/enqueue

	REDIS_PORT="$(first_free_port 6391 6399)"
	redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
		--maxmemory-policy noeviction --dir "$WORK" --logfile "$WORK/redis.log" --daemonize no &
	PIDS+=($!)
	wait_for "redis-server on port $REDIS_PORT" redis-cli -p "$REDIS_PORT" ping

	local sim_port http_port
	sim_port="$(first_free_port 18089 18099)"
	"$WORK/bin/odin-sim" --addr "127.0.0.1:$sim_port" --users 2000 --latency 20ms 2>"$WORK/odin-sim.log" &
	PIDS+=($!)
	wait_for "odin-sim on port $sim_port" curl -sf "http://127.0.0.1:$sim_port/_sim/stats"

	head -c 32 /dev/urandom | base64 >"$WORK/results-key"
	printf 'odin-sim-password' >"$WORK/odin-password"
	MONITORING_USER="dashboard"
	MONITORING_PASSWORD="$(head -c 12 /dev/urandom | base64 | tr -d '/+=')"
	http_port="$(first_free_port 18080 18088)"
	export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
	export RESULTS_KEY_FILE="$WORK/results-key"
	env ODIN_BASE_URL="http://127.0.0.1:$sim_port/api/v2" ODIN_USERNAME=admin \
		ODIN_PASSWORD_FILE="$WORK/odin-password" ODIN_RATE_LIMIT=20 \
		HTTP_ADDR="127.0.0.1:$http_port" MONITORING_USER="$MONITORING_USER" \
		MONITORING_PASSWORD="$MONITORING_PASSWORD" LOG_FORMAT=json \
		"$WORK/bin/worker" 2>"$WORK/worker.log" &
	PIDS+=($!)
	wait_for "the worker's /readyz" curl -sf "http://127.0.0.1:$http_port/readyz"

	"$WORK/bin/enqueue" --service-provider sp1 --group grp1 --type web --all-users --job-id dashboard-web
	"$WORK/bin/enqueue" --service-provider sp1 --group grp1 --type voicemail --all-users --priority low --job-id dashboard-vm
	"$WORK/bin/enqueue" --service-provider sp1 --group grp1 --type sip --user user0001@example.com --priority high --job-id dashboard-sip

	URL="http://127.0.0.1:$http_port/monitoring/"
	# The web job fans out first; wait until its per-user tasks queue up behind the
	# rate limit, so the page shows a batch in progress.
	wait_for "pending tasks in reset-default" bash -c \
		"curl -sf -u '$MONITORING_USER:$MONITORING_PASSWORD' '${URL}api/queues' | grep -Eq '\"queue\":\"reset-default\"[^}]*\"pending\":[1-9]'"
}

if [[ -z "$URL" ]]; then
	start_stack
else
	MONITORING_USER="${MONITORING_USER:-}"
	if [[ -z "${MONITORING_PASSWORD:-}" && -n "${MONITORING_PASSWORD_FILE:-}" ]]; then
		MONITORING_PASSWORD="$(<"$MONITORING_PASSWORD_FILE")"
	fi
	MONITORING_PASSWORD="${MONITORING_PASSWORD:-}"
fi

# Put the login into the URL: Chromium sends it as basic authentication for the page and
# for the dashboard's API requests to the same origin.
case "$URL" in
http://* | https://*) ;;
*) echo "dashboard-screenshot: --url $URL is invalid: use an http:// or https:// URL" >&2; exit 2 ;;
esac
AUTH_URL="$URL"
if [[ -n "$MONITORING_USER" ]]; then
	AUTH_URL="${URL%%://*}://$MONITORING_USER:$MONITORING_PASSWORD@${URL#*://}"
fi

# The dashboard is a single-page app that loads its data after the page: the virtual
# time budget lets its requests finish before Chromium renders.
chromium_run() {
	local profile
	profile="$(mktemp -d -p "$WORK")"
	"$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
		--disable-component-update --no-first-run --user-data-dir="$profile" \
		--window-size=1400,900 --virtual-time-budget=10000 "$@" "$AUTH_URL"
}

mkdir -p "$(dirname "$OUT")"
chromium_run --screenshot="$OUT" 2>"$WORK/chromium.log" || {
	echo "dashboard-screenshot: chromium failed; its log:" >&2
	cat "$WORK/chromium.log" >&2
	exit 1
}
chromium_run --dump-dom >"$WORK/dom.html" 2>>"$WORK/chromium.log"
if [[ -n "$DOM" ]]; then
	cp "$WORK/dom.html" "$DOM"
fi

missing=0
for text in "${EXPECT[@]}"; do
	if ! grep -qF -- "$text" "$WORK/dom.html"; then
		echo "dashboard-screenshot: the rendered page does not contain \"$text\"" >&2
		missing=1
	fi
done
if grep -q '404 - Page Not Found' "$WORK/dom.html"; then
	echo "dashboard-screenshot: the dashboard shows its 404 page: use the dashboard root, like http://host:port/monitoring/" >&2
	missing=1
fi
if ((missing)); then
	exit 1
fi
echo "dashboard-screenshot: wrote $OUT; the page lists ${EXPECT[*]}" >&2
