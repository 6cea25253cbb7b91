//! The `legate-xds` binary: `validate`, and `serve` reloading its mesh
//! (a broken save is reported with file, line and field, counted in
//! `/metrics`, and the previous mesh keeps being served).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_legate-xds");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mesh")
}

#[test]
fn every_example_mesh_validates() {
    let out = Command::new(BIN)
        .arg("validate")
        .arg(examples())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok (4 services)"));
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "legate-xds-cli-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn validate_names_file_line_and_field() {
    let dir = scratch();
    let f = dir.join("bad.yaml");
    std::fs::write(
        &f,
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n    routes:\n      - destinations: [{ subset: nope }]\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("validate").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:5: services[0].routes[0].destinations[0].subset: service \"a\" has no subset \"nope\"",
            f.display()
        )),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// `legate-xds serve` on free ports, its stderr lines forwarded to a channel.
struct Served {
    child: Child,
    admin: SocketAddr,
    lines: mpsc::Receiver<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn serve(mesh: &Path) -> Served {
    let (ads, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("serve")
        .arg("--mesh")
        .arg(mesh)
        .args(["--listen", &ads.to_string(), "--admin", &admin.to_string()])
        .args(["--watch-interval", "50ms"])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("legate-xds: {line}");
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Served {
        child,
        admin,
        lines,
    }
}

/// Waits up to 10 s for a log line containing `needle`.
fn wait_line(s: &Served, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match s.lines.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    panic!("no log line with {needle:?} within 10 s");
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out.split_once("\r\n\r\n")?.1.to_string())
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Saves as editors do (write a new file, rename it over the old), so the
/// watcher never reads a half-written file.
fn save(file: &Path, text: &str) {
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

#[test]
fn serve_reports_a_broken_save_and_keeps_the_last_good_mesh() {
    let dir = scratch();
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, "services:\n  - name: a\n    ports: [{ port: 80 }]\n").unwrap();
    let s = serve(&dir);
    wait_line(&s, "serving ADS");
    let metrics = |s: &Served| http_get(s.admin, "/metrics").unwrap_or_default();
    eventually("admin answers", || {
        metric(&metrics(&s), "legate_xds_mesh_services") == Some(1.0)
    });
    assert_eq!(
        http_get(s.admin, "/proxies").as_deref().map(str::trim),
        Some("[]")
    );

    // A broken save: reported with file, line and field; nothing changes.
    save(
        &file,
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n  - name: b\n    ports: [{ port: 0 }]\n",
    );
    let line = wait_line(&s, "mesh rejected");
    assert!(
        line.contains(&format!(
            "{}:5: services[1].ports[0].port: port 0 is not a port",
            file.display()
        )),
        "{line}"
    );
    let m = metrics(&s);
    assert_eq!(
        metric(&m, "legate_xds_mesh_reloads_total{result=\"rejected\"}"),
        Some(1.0),
        "{m}"
    );
    assert_eq!(metric(&m, "legate_xds_mesh_valid"), Some(0.0));
    assert_eq!(metric(&m, "legate_xds_mesh_services"), Some(1.0));

    // Fixed: applied.
    save(
        &file,
        "services:\n  - name: a\n    ports: [{ port: 80 }]\n  - name: b\n    ports: [{ port: 81 }]\n",
    );
    wait_line(&s, "mesh changed");
    eventually("the fixed mesh is served", || {
        let m = metrics(&s);
        metric(&m, "legate_xds_mesh_services") == Some(2.0)
            && metric(&m, "legate_xds_mesh_valid") == Some(1.0)
    });
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn serve_refuses_to_start_on_an_invalid_mesh() {
    let dir = scratch();
    let file = dir.join("mesh.yaml");
    std::fs::write(&file, "services:\n  - name: a\n    ports: []\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin",
            "127.0.0.1:0",
            "--mesh",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("services[0].ports: a service needs at least one port"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
