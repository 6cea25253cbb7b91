#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: exact
# and repeatable on a noisy machine (no hardware counters needed).
#
#   benches/callgrind.sh                 # legate, envoy, nginx; HTTP/1.1
#   TARGETS="legate" benches/callgrind.sh
#   N1=2000 N2=12000 CONNS=16 benches/callgrind.sh
#   POLICIES=1 TARGETS=legate benches/callgrind.sh   # with retries, a rate limit,
#                                                    # a circuit breaker and outlier detection
#   PROTO=h2 TARGETS=legate benches/callgrind.sh     # HTTP/2 (h2c prior knowledge)
#                                                    # both ways, 10 streams a connection
#
# Each proxy runs under callgrind twice, forwarding N1 and then N2 requests
# (h2load --h1, CONNS keep-alive connections) to one nginx upstream; the
# difference in total instructions divided by N2-N1 is the cost of one
# request, with connection set-up cancelled out. Instrumentation is off
# during start-up and shutdown (--instr-atstart=no, switched on and off with
# callgrind_control around the load): start-up work that loops on the clock
# (metrics' clock calibration) would otherwise add hundreds of instructions
# of noise per request. Legate runs with one
# worker thread, Envoy with --concurrency 1, nginx with one worker. Only
# 127.0.0.1 is used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N1=${N1:-2000}
N2=${N2:-12000}
CONNS=${CONNS:-16}
PROTO=${PROTO:-h1}
case $PROTO in
h1) LOAD_ARGS=(--h1) UP_LISTEN_OPTS="" CLUSTER_PROTOCOL="" ;;
h2)
	LOAD_ARGS=(-m 10) UP_LISTEN_OPTS=" http2" CLUSTER_PROTOCOL="    protocol: http2"
	[[ ${TARGETS:-} == legate ]] || {
		echo "PROTO=h2 is for TARGETS=legate (the Envoy and nginx configs here are HTTP/1.1)" >&2
		exit 2
	}
	;;
*)
	echo "PROTO is h1 or h2" >&2
	exit 2
	;;
esac
TARGETS=${TARGETS:-"legate envoy nginx"}
LEGATE_BIN=${LEGATE_BIN:-$ROOT/target/release/legate}
# shellcheck source=benches/find-envoy.sh
source "$ROOT/benches/find-envoy.sh"
ENVOY=$(find_envoy 2>/dev/null || true)
TMP=$(mktemp -d)
PIDS=()
cleanup() {
	# KEEP_OUT=DIR keeps the callgrind profiles (callgrind_annotate them).
	if [[ -n ${KEEP_OUT:-} ]]; then mkdir -p "$KEEP_OUT" && cp "$TMP"/cg.* "$KEEP_OUT"/ 2>/dev/null || true; fi
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT

UP=18280
PORT=10980
ADMIN=15980

cat >"$TMP/up.conf" <<NGX
daemon off; master_process off; worker_processes 1; error_log $TMP/up-err.log; pid $TMP/up.pid;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 10000000;
  server { listen 127.0.0.1:$UP$UP_LISTEN_OPTS; location / { return 200 "hello from upstream\n"; } } }
NGX
nginx -c "$TMP/up.conf" -p "$TMP" &
PIDS+=($!)

# POLICIES=1: Legate's route also retries and rate-limits, and its cluster
# has circuit breakers and outlier detection (limits never hit), to count
# what the resilience layers cost a request.
RETRY= RATE_LIMIT= CLUSTER_POLICIES=
if [[ ${POLICIES:-0} == 1 ]]; then
	# shellcheck source=benches/policies.sh
	source "$ROOT/benches/policies.sh"
	RETRY=$POLICY_RETRY RATE_LIMIT=$POLICY_RATE_LIMIT CLUSTER_POLICIES=$POLICY_CLUSTER
fi
cat >"$TMP/legate.yaml" <<YAML
admin: { address: "127.0.0.1:$ADMIN" }
listeners:
  - name: h1
    address: "127.0.0.1:$PORT"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: { prefix: "/" }
                route: { cluster: up$RETRY }
$RATE_LIMIT
clusters:
  - name: up
    endpoints: [{ address: "127.0.0.1:$UP" }]
$CLUSTER_PROTOCOL
$CLUSTER_POLICIES
YAML

cat >"$TMP/envoy.yaml" <<YAML
admin: { address: { socket_address: { address: 127.0.0.1, port_value: $ADMIN } } }
static_resources:
  listeners:
    - name: h1
      address: { socket_address: { address: 127.0.0.1, port_value: $PORT } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: h1
                route_config:
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes: [{ match: { prefix: "/" }, route: { cluster: up } }]
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
    - name: up
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: up
        endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $UP } } } }] }]
YAML

cat >"$TMP/nginx.conf" <<NGX
daemon off; master_process off; worker_processes 1; error_log $TMP/px-err.log; pid $TMP/px.pid;
events { worker_connections 4096; }
http { access_log off;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$PORT; keepalive_requests 10000000;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
NGX

wait_port() { # PORT
	for _ in $(seq 600); do
		curl -s --noproxy '*' -o /dev/null "http://127.0.0.1:$1/" && return 0
		sleep 0.1
	done
	echo "port $1 never answered" >&2
	return 1
}

run_one() { # TARGET N -> prints total Ir
	local target=$1 n=$2 out="$TMP/cg.$1.$2" pid
	case $target in
	legate) LEGATE_WORKER_THREADS=1 valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" \
		"$LEGATE_BIN" run --config "$TMP/legate.yaml" 2>"$TMP/$target.log" & ;;
	envoy) valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$ENVOY" -c "$TMP/envoy.yaml" \
		--concurrency 1 -l error --disable-hot-restart --base-id $((RANDOM + 1000)) 2>"$TMP/$target.log" & ;;
	nginx) valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" nginx -c "$TMP/nginx.conf" -p "$TMP" 2>"$TMP/$target.log" & ;;
	esac
	pid=$!
	PIDS+=("$pid")
	wait_port "$PORT"
	callgrind_control -i on "$pid" >/dev/null 2>&1
	h2load "${LOAD_ARGS[@]}" -n "$n" -c "$CONNS" "http://127.0.0.1:$PORT/" >"$TMP/h2load.$target.$n" 2>&1
	callgrind_control -i off "$pid" >/dev/null 2>&1
	# Dump now: Envoy can exit without callgrind's final dump.
	callgrind_control -d "$pid" >/dev/null 2>&1
	grep -q "$n succeeded" "$TMP/h2load.$target.$n" || { echo "$target: not all requests succeeded" >&2; cat "$TMP/h2load.$target.$n" >&2; return 1; }
	case $target in
	legate | envoy) curl -s --noproxy '*' -X POST "http://127.0.0.1:$ADMIN/quitquitquit" >/dev/null ;;
	nginx) kill -QUIT "$pid" ;;
	esac
	wait "$pid" 2>/dev/null || true
	# The explicit dump holds the load; a final dump, if any, adds ~0.
	cat "$out"* | awk '/^totals:/ { t += $2 } END { print t + 0 }'
}

echo "## Instructions per request (callgrind), $([[ $PROTO == h2 ]] && echo "HTTP/2, 10 streams a connection" || echo HTTP/1.1), $CONNS keep-alive connections"
echo
echo "    date: $(date -u '+%Y-%m-%d %H:%M UTC'); requests: $N1 and $N2; $(valgrind --version)"
echo
echo "| proxy | instructions / request |"
echo "|---|---:|"
declare -A RESULT
for t in $TARGETS; do
	if [[ $t == envoy && -z $ENVOY ]]; then echo "| envoy | (not found) |"; continue; fi
	a=$(run_one "$t" "$N1")
	b=$(run_one "$t" "$N2")
	RESULT[$t]=$(((b - a) / (N2 - N1)))
	echo "| $t | ${RESULT[$t]} |"
done
if [[ -n ${RESULT[legate]:-} ]]; then
	for t in envoy nginx; do
		[[ -n ${RESULT[$t]:-} ]] && awk -v l="${RESULT[legate]}" -v p="${RESULT[$t]}" -v t="$t" \
			'BEGIN { printf "- legate / %s: %.2fx the instructions\n", t, l / p }'
	done
fi
