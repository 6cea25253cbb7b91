//! The `legate` binary: `validate`, `run` refusing bad config whole, and
//! drain on SIGTERM and `/quitquitquit` with requests in flight.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_legate");

fn write_config(text: &str) -> tempfile_path::TempPath {
    tempfile_path::TempPath::with(text)
}

/// A tiny temp-file helper (std only).
mod tempfile_path {
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicUsize, Ordering};

    pub struct TempPath(PathBuf);

    impl TempPath {
        pub fn with(text: &str) -> Self {
            static N: AtomicUsize = AtomicUsize::new(0);
            let p = std::env::temp_dir().join(format!(
                "legate-test-{}-{}.yaml",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            std::fs::write(&p, text).unwrap();
            TempPath(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

#[test]
fn validate_reports_every_error_with_its_path() {
    let cfg = write_config(
        r#"
listeners:
  - name: web
    address: 127.0.0.1:8080
    http:
      route_config:
        virtual_hosts:
          - name: a
            domains: ["*"]
            routes:
              - match: { prefix: "/" }
                route: { cluster: nowhere, timeout: 5s }
clusters:
  - name: one
    endpoints: [{ address: "127.0.0.1:80" }]
  - name: two
    endpoints: [{ address: "127.0.0.1:81" }]
  - name: three
    endpoints: [{ address: "10.0.0.1:99999" }]
"#,
    );
    let out = Command::new(BIN)
        .arg("validate")
        .arg(cfg.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            r#"clusters[2].endpoints[0].address: invalid socket address "10.0.0.1:99999""#
        ),
        "{err}"
    );
    assert!(
        err.contains(r#"listeners[0].filter_chains[0].http.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster "nowhere""#),
        "{err}"
    );

    let syntax = write_config("clusters:\n  - name: x\n    connect_timeout: soon\n");
    let out = Command::new(BIN)
        .arg("validate")
        .arg(syntax.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("clusters[0].connect_timeout: invalid duration \"soon\""),
        "{err}"
    );
}

#[test]
fn every_example_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "examples: {files:?}");
    // The Kubernetes example's sidecar configuration.
    files.push(dir.join("kubernetes").join("legate.yaml"));
    let out = Command::new(BIN)
        .arg("validate")
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn run_refuses_invalid_config_whole() {
    // One listener is fine; the second's port is taken. Nothing may start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let free_addr = free.local_addr().unwrap();
    drop(free);
    let cfg = write_config(&format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: first
    address: "{free_addr}"
    tcp: {{ cluster: c }}
  - name: second
    address: "{}"
    tcp: {{ cluster: c }}
clusters:
  - name: c
    endpoints: [{{ address: "127.0.0.1:9" }}]
"#,
        taken.local_addr().unwrap()
    ));
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listener \"second\": cannot listen on"),
        "{err}"
    );

    let bad =
        write_config("listeners:\n  - name: x\n    address: nowhere\n    tcp: { cluster: c }\n");
    let out = Command::new(BIN)
        .args(["run", "--config"])
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("listeners[0].address: invalid socket address \"nowhere\""),
        "{err}"
    );
    assert!(
        err.contains("listeners[0].filter_chains[0].tcp.cluster: unknown cluster \"c\""),
        "{err}"
    );
}

/// A running `legate run` process; killed on drop.
struct Proc {
    child: Child,
    admin: SocketAddr,
    web: SocketAddr,
    _cfg: tempfile_path::TempPath,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary and reads the bound addresses from its start-up log line.
fn spawn(upstream: SocketAddr, drain_timeout: &str) -> Proc {
    let clusters = format!("  - name: up\n    endpoints: [{{ address: \"{upstream}\" }}]");
    let cfg = write_config(&format!(
        "admin: {{ address: \"127.0.0.1:0\", drain_timeout: {drain_timeout} }}\n{}",
        catch_all("up", "", &clusters)
    ));
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(cfg.path())
        .env("LEGATE_LOG", "info")
        .env("LEGATE_WORKER_THREADS", "2")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let started = loop {
        let line = lines
            .next()
            .expect("legate exited before starting")
            .unwrap();
        if line.contains("legate started") {
            break line;
        }
    };
    // Keep draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    let grab = |key: &str| -> SocketAddr {
        let rest = &started[started.find(key).unwrap() + key.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
            .unwrap_or(rest.len());
        rest[..end].parse().unwrap()
    };
    let admin = grab("admin=");
    let web = grab("(\"web\", ");
    Proc {
        child,
        admin,
        web,
        _cfg: cfg,
    }
}

async fn drain_test(trigger: impl FnOnce(&Proc)) {
    let up = upstream("up").await;
    let mut proc = spawn(up.addr, "5s");
    let web = proc.web;
    assert_eq!(get(web, "x", "/", &[]).await.status, 200);

    // 20 requests in flight, each taking 700 ms upstream.
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..20 {
        inflight.spawn(async move { get(web, "x", "/sleep/700", &[]).await.status });
    }
    eventually("all requests reached the upstream", || async {
        up.requests.load(std::sync::atomic::Ordering::SeqCst) >= 21
    })
    .await;
    trigger(&proc);

    let results: Vec<u16> = inflight.join_all().await;
    assert_eq!(results, vec![200; 20], "every in-flight request finished");
    let status = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(s) = proc.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "legate did not exit after draining"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        std::net::TcpStream::connect(web).is_err(),
        "listener closed after exit"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    drain_test(|p| {
        let ok = Command::new("kill")
            .args(["-TERM", &p.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitquitquit_drains_in_flight_requests() {
    drain_test(|p| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-X",
                "POST",
                &format!("http://{}/quitquitquit", p.admin),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "OK\n");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_deadline_bounds_shutdown() {
    let up = upstream("up").await;
    let mut proc = spawn(up.addr, "300ms");
    let web = proc.web;
    let stuck = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(web).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        s.write_all(b"GET /sleep/30000 HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf).await;
    });
    eventually("request reached upstream", || async {
        up.requests.load(std::sync::atomic::Ordering::SeqCst) >= 1
    })
    .await;
    let start = std::time::Instant::now();
    Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || proc.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "exited at the drain deadline, not after the request"
    );
    let _ = stuck.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_http2_streams_in_flight() {
    let up = upstream("up").await;
    let mut proc = spawn(up.addr, "5s");
    let web = proc.web;
    // One HTTP/2 connection (the client multiplexes), 10 streams in flight.
    let client = h2_client();
    let mut inflight = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let client = client.clone();
        inflight.spawn(async move {
            let req = http::Request::get(format!("http://{web}/sleep/700"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            send(&client, req).await.status
        });
    }
    eventually("all streams reached the upstream", || async {
        up.requests.load(std::sync::atomic::Ordering::SeqCst) >= 10
    })
    .await;
    let ok = Command::new("kill")
        .args(["-TERM", &proc.child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    assert_eq!(
        inflight.join_all().await,
        vec![200; 10],
        "every stream finished"
    );
    let status = tokio::task::spawn_blocking(move || proc.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
