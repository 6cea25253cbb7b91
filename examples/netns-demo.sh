#!/usr/bin/env bash
# Transparent interception by hand, in three network namespaces this script
# makes and removes again (nothing outside them is touched):
#
#   client 10.78.0.2 --- 10.78.0.1 pod 10.77.0.1 --- 10.77.0.2 server
#
# The pod runs an application (HTTP on :8080) and Legate as its sidecar,
# as UID 1337, with the rules from `legate iptables apply`. The server runs
# HTTP on :80 and a TCP echo on :9000. Then:
#   - the application calls the server: through Legate (a header is added);
#   - the application opens TCP to the server's :9000: passed through;
#   - the client calls the application: through Legate (x-forwarded-for);
#   - `legate iptables clean`, and the same calls go direct.
#
#   sudo examples/netns-demo.sh            # builds nothing: uses LEGATE_BIN
#   LEGATE_BIN=target/release/legate sudo -E examples/netns-demo.sh
#
# Needs root, ip (iproute2), iptables, python3, curl and setpriv.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LEGATE_BIN=${LEGATE_BIN:-$ROOT/target/release/legate}
[[ -x $LEGATE_BIN ]] || { echo "no Legate binary at $LEGATE_BIN (cargo build --release, or set LEGATE_BIN)" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "run as root (it makes network namespaces)" >&2; exit 1; }

TAG=lgdemo$$
POD=$TAG-pod SERVER=$TAG-server CLIENT=$TAG-client
TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	for n in $POD $SERVER $CLIENT; do ip netns del "$n" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
inside() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# (Background processes are started with `ip netns exec` itself, which
# becomes the process: its PID is the one to kill.)
say() { printf '\n== %s\n' "$*"; }
wait_http() { # NS URL
	for _ in $(seq 200); do inside "$1" curl -sf -o /dev/null "$2" && return 0; sleep 0.05; done
	echo "$2 never answered in $1" >&2
	return 1
}

for n in $POD $SERVER $CLIENT; do ip netns add "$n"; inside "$n" ip link set lo up; done
inside $POD ip link add v0 type veth peer name v1 netns $SERVER
inside $POD ip addr add 10.77.0.1/24 dev v0 && inside $POD ip link set v0 up
inside $SERVER ip addr add 10.77.0.2/24 dev v1 && inside $SERVER ip link set v1 up
inside $POD ip link add v2 type veth peer name v3 netns $CLIENT
inside $POD ip addr add 10.78.0.1/24 dev v2 && inside $POD ip link set v2 up
inside $CLIENT ip addr add 10.78.0.2/24 dev v3 && inside $CLIENT ip link set v3 up

cat >"$TMP/server.py" <<'PY'
import socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from the server; it saw %s ask for %s\n" % (self.client_address[0], self.path)).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
def echo():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 9000)); l.listen(16)
    while True:
        c, _ = l.accept(); c.sendall(c.recv(4096)); c.close()
threading.Thread(target=echo, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
PY
cat >"$TMP/app.py" <<'PY'
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from the app; it saw %s, x-forwarded-for %s\n" % (self.client_address[0], self.headers.get("x-forwarded-for"))).encode()
        self.send_response(200); self.send_header("content-length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
PY
cat >"$TMP/legate.yaml" <<'YAML'
admin: { address: "127.0.0.1:15000" }
listeners:
  - name: virtual_outbound
    address: "0.0.0.0:15001"
    use_original_dst: true
  - name: virtual_inbound
    address: "0.0.0.0:15006"
    use_original_dst: true
    filter_chains:
      - match: { destination_port: 8080 }
        http:
          route_config:
            virtual_hosts:
              - name: app
                domains: ["*"]
                routes: [{ match: { prefix: "/" }, route: { cluster: app } }]
  - name: server
    address: "10.77.0.2:80"
    bind_to_port: false
    http:
      route_config:
        virtual_hosts:
          - name: server
            domains: ["*"]
            response_headers: { add: [{ name: x-through, value: legate }] }
            routes: [{ match: { prefix: "/" }, route: { cluster: server } }]
clusters:
  - name: server
    endpoints: [{ address: "10.77.0.2:80" }]
  - name: app
    endpoints: [{ address: "127.0.0.1:8080" }]
YAML
chmod 644 "$TMP"/*

ip netns exec $SERVER python3 "$TMP/server.py" & PIDS+=($!)
ip netns exec $POD python3 "$TMP/app.py" & PIDS+=($!)
wait_http $SERVER http://127.0.0.1/
wait_http $POD http://127.0.0.1:8080/

calls() {
	say "the app calls http://10.77.0.2/reviews"
	inside $POD curl -s -i http://10.77.0.2/reviews | grep -iE '^(HTTP/|x-through|hello)' || true
	say "the app sends 'ping' over TCP to 10.77.0.2:9000"
	inside $POD python3 -c 'import socket; c = socket.create_connection(("10.77.0.2", 9000), timeout=5); c.sendall(b"ping"); print("echoed:", c.recv(100).decode())'
	say "the client calls http://10.78.0.1:8080/"
	inside $CLIENT curl -s http://10.78.0.1:8080/
}

say "without Legate"
calls

say "start Legate as UID 1337 and apply the rules"
ip netns exec $POD setpriv --reuid 1337 --regid 1337 --clear-groups "$LEGATE_BIN" run --config "$TMP/legate.yaml" >"$TMP/legate.log" 2>&1 &
PIDS+=($!)
wait_http $POD http://127.0.0.1:15000/ready
inside $POD "$LEGATE_BIN" iptables apply --ipv6 off
calls
say "Legate's count of intercepted connections"
inside $POD curl -s http://127.0.0.1:15000/stats/prometheus | grep '^legate_listener_original_dst_total' | grep -v ' 0$'

say "legate iptables clean"
inside $POD "$LEGATE_BIN" iptables clean
calls
say "done (namespaces removed on exit)"
