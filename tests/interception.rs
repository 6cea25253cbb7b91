//! Transparent interception end to end, in network namespaces the test
//! makes: a `pod` (10.77.N.1, 10.78.N.1) whose rules come from `legate
//! iptables apply` and whose Legate runs as UID 1337, a `server`
//! (10.77.N.2) and a `client` (10.78.N.2), each joined to the pod by a veth
//! pair. The pod's application (curl, python, as root) calls the server,
//! and the client calls the application, as if there were no proxy.
//!
//! Needs root, ip, iptables, python3, curl and setpriv (see
//! `common/netns.rs`: skipped outside CI without them, failing under CI).

#[path = "common/netns.rs"]
mod netns;
use netns::{Background, LEGATE, Netns, can_run, serial};

/// The server: HTTP on :80 answering what it saw, a TCP echo on :9000.
const SERVER: &str = r#"
import socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("server saw %s %s" % (self.client_address[0], self.path)).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
def echo():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 9000)); l.listen(16)
    while True:
        c, _ = l.accept()
        def one(c):
            while True:
                d = c.recv(4096)
                if not d:
                    break
                c.sendall(d)
            c.close()
        threading.Thread(target=one, args=(c,), daemon=True).start()
threading.Thread(target=echo, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", 80), H).serve_forever()
"#;

/// The pod's application: HTTP on :8080 answering who called and the
/// `x-forwarded-for` it got, a TCP service on :7000 answering the address
/// the connection came from.
const APP: &str = r#"
import socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("app saw %s xff=%s" % (self.client_address[0], self.headers.get("x-forwarded-for"))).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
def who():
    l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    l.bind(("0.0.0.0", 7000)); l.listen(16)
    while True:
        c, a = l.accept()
        c.recv(4096)
        c.sendall(("from-%s" % a[0]).encode())
        c.close()
threading.Thread(target=who, daemon=True).start()
ThreadingHTTPServer(("0.0.0.0", 8080), H).serve_forever()
"#;

/// A TCP client: sends `ping` to argv[1]:argv[2] and prints what came back.
const TCP_CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(b"ping"); c.shutdown(socket.SHUT_WR)
got = b""
while True:
    d = c.recv(4096)
    if not d:
        break
    got += d
print("got:%s" % got.decode())
"#;

/// `curl -i` of `url` from inside `ns`: the response head and body.
fn curl_from(ns: &Netns, url: &str) -> String {
    ns.ok(&["curl", "-s", "-i", "--max-time", "5", url])
}

/// [`TCP_CLIENT`] from inside `ns` to `ip:port`: what it printed, errors
/// included.
fn tcp_from(ns: &Netns, ip: &str, port: u16) -> String {
    let out = ns.exec(&["python3", "-c", TCP_CLIENT, ip, &port.to_string()]);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// (Fields drop in order: the processes go before their namespaces.)
struct Mesh {
    legate: Option<Background>,
    _server: Background,
    _app: Background,
    pod: Netns,
    _server_ns: Netns,
    client: Netns,
    pod_ip: String,
    server_ip: String,
    /// The pod's address on the client's side, and the client's.
    pod_front_ip: String,
    client_ip: String,
    dir: tempdir::Dir,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        pub fn new() -> Dir {
            let p = std::env::temp_dir().join(format!(
                "legate-netns-{}-{}",
                std::process::id(),
                super::serial()
            ));
            std::fs::create_dir_all(&p).unwrap();
            // Legate runs as UID 1337 and reads its configuration here.
            let _ = std::process::Command::new("chmod")
                .arg("755")
                .arg(&p)
                .status();
            Dir(p)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Mesh {
    /// The namespaces, the veth between them, the server running.
    fn new() -> Mesh {
        let n = serial() % 250 + 1;
        let pod = Netns::new();
        let server = Netns::new();
        let (pod_ip, server_ip) = (format!("10.77.{n}.1"), format!("10.77.{n}.2"));
        pod.ok(&[
            "ip", "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &server.0,
        ]);
        pod.ok(&["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", "v0"]);
        pod.ok(&["ip", "link", "set", "v0", "up"]);
        server.ok(&["ip", "addr", "add", &format!("{server_ip}/24"), "dev", "v1"]);
        server.ok(&["ip", "link", "set", "v1", "up"]);
        let client = Netns::new();
        let (pod_front_ip, client_ip) = (format!("10.78.{n}.1"), format!("10.78.{n}.2"));
        pod.ok(&[
            "ip", "link", "add", "v2", "type", "veth", "peer", "name", "v3", "netns", &client.0,
        ]);
        pod.ok(&[
            "ip",
            "addr",
            "add",
            &format!("{pod_front_ip}/24"),
            "dev",
            "v2",
        ]);
        pod.ok(&["ip", "link", "set", "v2", "up"]);
        client.ok(&["ip", "addr", "add", &format!("{client_ip}/24"), "dev", "v3"]);
        client.ok(&["ip", "link", "set", "v3", "up"]);
        let srv = server.spawn(&["python3", "-c", SERVER]);
        let app = pod.spawn(&["python3", "-c", APP]);
        server.wait_ok(&["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1/"]);
        pod.wait_ok(&["curl", "-sf", "-o", "/dev/null", "http://127.0.0.1:8080/"]);
        Mesh {
            legate: None,
            _server: srv,
            _app: app,
            pod,
            _server_ns: server,
            client,
            pod_ip,
            server_ip,
            pod_front_ip,
            client_ip,
            dir: tempdir::Dir::new(),
        }
    }

    /// Starts Legate in the pod as UID 1337 with `policy`, applies the
    /// rules.
    fn start_legate(&mut self, policy: &str) {
        let config = format!(
            r#"admin: {{ address: "127.0.0.1:15000" }}
listeners:
  - name: virtual_outbound
    address: "0.0.0.0:15001"
    use_original_dst: true
    outbound_traffic_policy: {policy}
  - name: virtual_inbound
    address: "0.0.0.0:15006"
    use_original_dst: true
    filter_chains:
      - match: {{ destination_port: 8080 }}
        http:
          route_config:
            virtual_hosts:
              - name: app
                domains: ["*"]
                response_headers: {{ add: [{{ name: x-inbound, value: legate }}] }}
                routes:
                  - match: {{ prefix: "/" }}
                    route: {{ cluster: app }}
  - name: server_http
    address: "{server}:80"
    bind_to_port: false
    http:
      route_config:
        virtual_hosts:
          - name: server
            domains: ["*"]
            response_headers: {{ add: [{{ name: x-through, value: legate }}] }}
            routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: server }}
clusters:
  - name: server
    endpoints: [{{ address: "{server}:80" }}]
  - name: app
    endpoints: [{{ address: "127.0.0.1:8080" }}]
"#,
            server = self.server_ip
        );
        let path = self.dir.0.join("legate.yaml");
        std::fs::write(&path, config).unwrap();
        let _ = std::process::Command::new("chmod")
            .arg("644")
            .arg(&path)
            .status();
        let legate = self.pod.spawn(&[
            "setpriv",
            "--reuid",
            "1337",
            "--regid",
            "1337",
            "--clear-groups",
            LEGATE,
            "run",
            "--config",
            path.to_str().unwrap(),
        ]);
        self.pod.wait_ok(&[
            "curl",
            "-sf",
            "-o",
            "/dev/null",
            "http://127.0.0.1:15000/ready",
        ]);
        self.legate = Some(legate);
        self.pod.ok(&[LEGATE, "iptables", "apply", "--ipv6", "off"]);
    }

    /// The pod's application calling the server.
    fn curl(&self, path: &str) -> String {
        curl_from(&self.pod, &format!("http://{}{path}", self.server_ip))
    }

    fn tcp(&self, port: u16) -> String {
        tcp_from(&self.pod, &self.server_ip, port)
    }

    /// The client calling the pod's application.
    fn client_curl(&self, path: &str) -> String {
        curl_from(
            &self.client,
            &format!("http://{}:8080{path}", self.pod_front_ip),
        )
    }

    fn client_tcp(&self, port: u16) -> String {
        tcp_from(&self.client, &self.pod_front_ip, port)
    }

    /// `legate_listener_original_dst_total` for `result`.
    fn routed(&self, result: &str) -> u64 {
        self.routed_on("virtual_outbound", result)
    }

    fn routed_on(&self, listener: &str, result: &str) -> u64 {
        let page = self
            .pod
            .ok(&["curl", "-s", "http://127.0.0.1:15000/stats/prometheus"]);
        page.lines()
            .filter(|l| {
                l.starts_with("legate_listener_original_dst_total{")
                    && l.contains(&format!("listener=\"{listener}\""))
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

#[test]
fn the_pods_calls_go_through_legate_and_clean_restores_direct_traffic() {
    if !can_run() {
        return;
    }
    let mut mesh = Mesh::new();
    // Before interception: straight to the server.
    let direct = mesh.curl("/before");
    assert!(
        direct.contains(&format!("server saw {} /before", mesh.pod_ip)),
        "{direct}"
    );
    assert!(
        !direct.to_ascii_lowercase().contains("x-through"),
        "{direct}"
    );

    mesh.start_legate("allow_any");

    // HTTP to the server's address: handed to the listener for it, routed.
    let http = mesh.curl("/hello");
    assert!(http.starts_with("HTTP/1.1 200"), "{http}");
    assert!(
        http.to_ascii_lowercase().contains("x-through: legate"),
        "the route's response header: {http}"
    );
    assert!(
        http.contains(&format!("server saw {} /hello", mesh.pod_ip)),
        "the server sees the request, from the pod: {http}"
    );
    // TCP to a port no listener has: passed through to where it was going.
    let tcp = mesh.tcp(9000);
    assert!(tcp.contains("got:ping"), "{tcp}");
    // Each call was intercepted once: Legate's own upstream connections
    // (UID 1337) are not.
    assert_eq!(mesh.routed("listener"), 1);
    assert_eq!(mesh.routed("passthrough"), 1);

    mesh.pod.ok(&[LEGATE, "iptables", "clean"]);
    let after = mesh.curl("/after");
    assert!(
        after.contains(&format!("server saw {} /after", mesh.pod_ip)),
        "{after}"
    );
    assert!(!after.to_ascii_lowercase().contains("x-through"), "{after}");
    assert_eq!(
        mesh.routed("listener"),
        1,
        "nothing intercepted after clean"
    );
}

#[test]
fn registry_only_closes_connections_to_unknown_destinations() {
    if !can_run() {
        return;
    }
    let mut mesh = Mesh::new();
    mesh.start_legate("registry_only");
    // Known: served.
    let http = mesh.curl("/known");
    assert!(http.contains("server saw"), "{http}");
    // Unknown: closed without reaching the server.
    let tcp = mesh.tcp(9000);
    assert!(!tcp.contains("got:ping"), "{tcp}");
    assert_eq!(mesh.routed("blocked"), 1);
    assert_eq!(mesh.routed("passthrough"), 0);
}

#[test]
fn calls_into_the_pod_reach_the_application_through_legate() {
    if !can_run() {
        return;
    }
    let mut mesh = Mesh::new();
    let direct = mesh.client_curl("/in");
    assert!(
        direct.contains(&format!("app saw {} xff=None", mesh.client_ip)),
        "{direct}"
    );

    mesh.start_legate("allow_any");
    // HTTP to the application's port: the inbound listener's chain for it,
    // the caller's address in x-forwarded-for.
    let http = mesh.client_curl("/in");
    assert!(http.starts_with("HTTP/1.1 200"), "{http}");
    assert!(
        http.to_ascii_lowercase().contains("x-inbound: legate"),
        "{http}"
    );
    assert!(
        http.contains(&format!("app saw 127.0.0.1 xff={}", mesh.client_ip)),
        "{http}"
    );
    // A port no chain serves: passed through to the application from
    // 127.0.0.6, which the rules do not intercept again.
    let tcp = mesh.client_tcp(7000);
    assert!(tcp.contains("got:from-127.0.0.6"), "{tcp}");
    assert_eq!(mesh.routed_on("virtual_inbound", "filter_chain"), 1);
    assert_eq!(mesh.routed_on("virtual_inbound", "passthrough"), 1);
    assert_eq!(
        mesh.routed("listener") + mesh.routed("passthrough"),
        0,
        "no loop"
    );

    mesh.pod.ok(&[LEGATE, "iptables", "clean"]);
    let after = mesh.client_curl("/in");
    assert!(
        after.contains(&format!("app saw {} xff=None", mesh.client_ip)),
        "{after}"
    );
}

/// `examples/netns-demo.sh` does what these tests do, by hand: it must
/// keep working (and leave nothing behind).
#[test]
fn the_netns_demo_runs() {
    if !can_run() {
        return;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/netns-demo.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .env("LEGATE_BIN", LEGATE)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("x-through: legate"), "{text}");
    assert!(text.contains("x-forwarded-for 10.78.0.2"), "{text}");
    assert!(text.contains("done (namespaces removed on exit)"), "{text}");
}
