//! Network namespaces for the interception tests: made by the test,
//! deleted when dropped (a failed test included).
#![allow(dead_code)]

use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const LEGATE: &str = env!("CARGO_BIN_EXE_legate");

/// Whether the machine can run these tests: root, `ip`, `iptables`,
/// python3, curl and setpriv. Outside CI a machine without them skips with a note; under CI
/// (`CI` set) that fails.
pub fn can_run() -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let tools = [
        "ip",
        "iptables",
        "iptables-save",
        "python3",
        "curl",
        "setpriv",
    ]
    .iter()
    .all(|t| Command::new(t).arg("--version").output().is_ok());
    if root && tools {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "CI is set: these tests need root, ip, iptables, python3, curl and setpriv (root: {root})"
        );
    }
    eprintln!("note: skipped (needs root, ip, iptables, python3, curl and setpriv)");
    false
}

/// A network namespace, deleted on drop.
pub struct Netns(pub String);

impl Netns {
    pub fn new() -> Netns {
        let name = format!("lgt-{}-{}", std::process::id(), serial());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add: {out:?}");
        let ns = Netns(name);
        ns.ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .output()
            .unwrap()
    }

    pub fn ok(&self, argv: &[&str]) -> String {
        let out = self.exec(argv);
        assert!(
            out.status.success(),
            "{argv:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The nat table as `iptables-save` shows it, without its comments.
    pub fn nat(&self, save: &str) -> String {
        self.ok(&[save, "-t", "nat"])
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A unique small number for names within this test process.
pub fn serial() -> usize {
    static N: AtomicUsize = AtomicUsize::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

impl Netns {
    /// Starts `argv` in the namespace, in the background (killed on drop).
    pub fn spawn(&self, argv: &[&str]) -> Background {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.0])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Background(child)
    }

    /// Polls `argv` in the namespace until it succeeds (10 s at most).
    pub fn wait_ok(&self, argv: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.exec(argv).status.success() {
                return;
            }
            assert!(Instant::now() < deadline, "{argv:?} never succeeded");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// A process running in a namespace; killed when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
