//! Control-plane fan-out: N simulated sidecars (default 1,000) connected to
//! a `legate-xds serve` process; the mesh file changes; how long until all
//! of them have ACKed the new configuration, and how much memory the
//! control plane holds.
//!
//! ```text
//! cargo bench -p legate-xds --bench fanout
//! cargo bench -p legate-xds --bench fanout -- --proxies 2000 --connections 40 --api delta
//! ```
//!
//! Knobs (flags after `--`, or environment):
//! - `--proxies N` / `FANOUT_PROXIES` (default 1000);
//! - `--api sotw|delta|both` / `FANOUT_API` (default both: state of the
//!   world, then delta, each against a fresh control plane);
//! - `--services N` / `FANOUT_SERVICES` (default 50): services in the mesh;
//! - `--connections N` / `FANOUT_CONNECTIONS` (default 20): the sidecars'
//!   streams are spread over this many HTTP/2 connections (real sidecars
//!   have one each; sharing keeps a thousand cheap for this process);
//! - `FANOUT_ATTACH_DELAY=SECS`: once the control plane is up, print its
//!   pid and wait, so a profiler can attach (`heaptrack -p`, `perf record -p`).
//!
//! The mesh: 50 HTTP services (by default), each with 3 workloads (2 v1,
//! 1 v2), subsets v1/v2, a header route to v2 and a 90/10 canary; every
//! sidecar may call every service (151 clusters, 150 EDS resources, 2
//! listeners, one route configuration with 50 virtual hosts); sidecars are
//! workloads of the services, round robin. The change: every canary goes
//! 50/50 (a new route configuration for every sidecar) and one workload is
//! added to svc-00 (new endpoints for every sidecar). The time of a change
//! runs from the `rename` that saves it to each sidecar's ACK, so it
//! includes up to one `--watch-interval` (50 ms) of the control plane not
//! having looked yet.
//!
//! Reported per API: connect + initial sync time; change -> all ACKed and
//! per-sidecar latency percentiles (routes and endpoints); the control
//! plane's CPU time (from `/proc/<pid>/stat`) for the sync and the change;
//! its RSS (`VmRSS`, `VmHWM`) idle, loaded, after the change, after every
//! sidecar disconnected, and with all of them connected again (RSS that
//! stays flat on reconnect is memory the allocator kept, not a leak).
//!
//! Both processes share this machine: the simulated sidecars' CPU (decoding
//! and ACKing) competes with the control plane's.
//!
//! `cargo test` does not run this (cargo passes `--bench` only under
//! `cargo bench`; without it, main returns at once).

#[path = "../tests/common/sim.rs"]
mod sim;

use legate_xds::translate::{ENDPOINT_TYPE, ROUTE_TYPE};
use sim::{Api, SimProxy, TYPES};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SYNC_DEADLINE: Duration = Duration::from_secs(300);
const CHANGE_DEADLINE: Duration = Duration::from_secs(120);

struct Config {
    proxies: usize,
    services: usize,
    connections: usize,
    apis: Vec<Api>,
    /// Seconds to wait once the control plane is up, for a profiler to
    /// attach (`heaptrack -p PID`, `perf record -p PID`).
    attach_delay: Option<u64>,
}

impl Config {
    fn from_env_and_args(args: &[String]) -> Config {
        let flag = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let get = |name: &str, env: &str| flag(name).or_else(|| std::env::var(env).ok());
        let number = |name: &str, env: &str, default: usize| match get(name, env) {
            None => default,
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("{name} / {env}: not a number: {v:?}")),
        };
        let apis = match get("--api", "FANOUT_API").as_deref().unwrap_or("both") {
            "sotw" => vec![Api::Sotw],
            "delta" => vec![Api::Delta],
            "both" => vec![Api::Sotw, Api::Delta],
            other => panic!("--api / FANOUT_API: sotw, delta or both, not {other:?}"),
        };
        Config {
            proxies: number("--proxies", "FANOUT_PROXIES", 1000),
            services: number("--services", "FANOUT_SERVICES", 50).max(1),
            connections: number("--connections", "FANOUT_CONNECTIONS", 20).max(1),
            apis,
            attach_delay: std::env::var("FANOUT_ATTACH_DELAY")
                .ok()
                .and_then(|v| v.parse().ok()),
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("fanout: skipped (run it with `cargo bench -p legate-xds --bench fanout`)");
        return;
    }
    let cfg = Config::from_env_and_args(&args);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut reports = Vec::new();
    for api in &cfg.apis {
        let r = rt.block_on(run(*api, &cfg));
        println!("{}", r.line());
        reports.push(r);
    }
    println!();
    println!(
        "{} simulated sidecars over {} shared HTTP/2 connections; {} services, \
         each sidecar holds {} clusters, {} endpoint sets, 2 listeners, 1 route configuration",
        cfg.proxies,
        cfg.connections.min(cfg.proxies.max(1)),
        cfg.services,
        3 * cfg.services + 1,
        3 * cfg.services,
    );
    println!(
        "change: every canary 90/10 -> 50/50 and one more endpoint; latency = file renamed -> sidecar ACK sent"
    );
    println!(
        "{:<6} {:>9} {:>9} {:>15} {:>22} {:>22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "api",
        "sync",
        "all ACKed",
        "CPU ms sync+chg",
        "routes p50/p99/max",
        "endpoints p50/p99/max",
        "RSS idle",
        "loaded",
        "changed",
        "peak",
        "closed",
        "again"
    );
    for r in &reports {
        r.row();
    }
}

/// What one run measured.
struct Report {
    api: Api,
    proxies: usize,
    connections: usize,
    /// Connecting and every sidecar ACKing all four types.
    initial_sync: Duration,
    /// Control-plane CPU during the initial sync and the change.
    sync_cpu: Duration,
    change_cpu: Duration,
    /// Per sidecar, sorted: save -> ACK of the new routes, endpoints.
    routes: Vec<Duration>,
    endpoints: Vec<Duration>,
    /// Responses of each of `TYPES` the change caused, over all sidecars.
    pushed: [u64; 4],
    rss_idle: u64,
    rss_loaded: u64,
    rss_changed: u64,
    rss_peak: u64,
    /// Once every sidecar disconnected.
    rss_closed: u64,
    /// With the same sidecars connected again.
    rss_again: u64,
    /// Bytes of responses received over all sidecars: the initial sync,
    /// the change.
    sync_bytes: u64,
    change_bytes: u64,
}

impl Report {
    fn all_acked(&self) -> Duration {
        let last = |v: &[Duration]| v.last().copied().unwrap_or_default();
        last(&self.routes).max(last(&self.endpoints))
    }

    fn spread(v: &[Duration]) -> String {
        let f = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1000.0);
        format!(
            "{}/{}/{} ms",
            f(pct(v, 50.0)),
            f(pct(v, 99.0)),
            f(v.last().copied().unwrap_or_default())
        )
    }

    fn line(&self) -> String {
        format!(
            "fanout {api}: {n} proxies ({c} connections): initial sync {sync}; \
             mesh change -> all ACKed {all} (routes p50 {rp50}, p99 {rp99}; \
             endpoints p50 {ep50}, p99 {ep99}; first ACK {first}; \
             pushed {routes} routes, {eds} endpoint responses, {other} clusters+listeners; \
             control plane CPU {cpu}); control plane RSS {idle} idle, {loaded} with {n} proxies, \
             {changed} after the change, {closed} once they disconnected, \
             {again} with them connected again; sent per sidecar: {sb} KB to sync, {cb} KB for the change",
            api = self.api.name(),
            n = self.proxies,
            c = self.connections,
            sync = ms(self.initial_sync),
            all = ms(self.all_acked()),
            rp50 = ms(pct(&self.routes, 50.0)),
            rp99 = ms(pct(&self.routes, 99.0)),
            ep50 = ms(pct(&self.endpoints, 50.0)),
            ep99 = ms(pct(&self.endpoints, 99.0)),
            first = ms(self.routes[0].min(self.endpoints[0])),
            routes = self.pushed[3],
            eds = self.pushed[1],
            other = self.pushed[0] + self.pushed[2],
            cpu = ms(self.change_cpu),
            idle = mb(self.rss_idle),
            loaded = mb(self.rss_loaded),
            changed = mb(self.rss_changed),
            closed = mb(self.rss_closed),
            again = mb(self.rss_again),
            sb = self.sync_bytes / 1024 / self.proxies.max(1) as u64,
            cb = self.change_bytes / 1024 / self.proxies.max(1) as u64,
        )
    }

    fn row(&self) {
        println!(
            "{:<6} {:>9} {:>9} {:>15} {:>22} {:>22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            self.api.name(),
            ms(self.initial_sync),
            ms(self.all_acked()),
            format!("{}+{}", ms0(self.sync_cpu), ms0(self.change_cpu)),
            Report::spread(&self.routes),
            Report::spread(&self.endpoints),
            mb(self.rss_idle),
            mb(self.rss_loaded),
            mb(self.rss_changed),
            mb(self.rss_peak),
            mb(self.rss_closed),
            mb(self.rss_again),
        );
    }
}

/// The mesh; `changed`: every canary 50/50 and a fourth workload in svc-00.
fn mesh(services: usize, changed: bool) -> String {
    let (v1, v2) = if changed { (50, 50) } else { (90, 10) };
    let mut y = String::from("services:\n");
    for i in 0..services {
        let (a, b) = (i / 250, i % 250);
        y += &format!(
            "  - name: svc-{i:02}
    ports:
      - {{ port: 8080, protocol: http }}
    workloads:
      - {{ address: 10.{a}.{b}.1:8080, labels: {{ version: v1 }} }}
      - {{ address: 10.{a}.{b}.2:8080, labels: {{ version: v1 }} }}
      - {{ address: 10.{a}.{b}.3:8080, labels: {{ version: v2 }} }}
"
        );
        if changed && i == 0 {
            y += &format!("      - {{ address: 10.{a}.{b}.4:8080, labels: {{ version: v1 }} }}\n");
        }
        y += &format!(
            "    subsets:
      - {{ name: v1, labels: {{ version: v1 }} }}
      - {{ name: v2, labels: {{ version: v2 }} }}
    routes:
      - name: testers
        match:
          - headers: {{ end-user: {{ exact: tester }} }}
        destinations: [{{ subset: v2 }}]
      - name: canary
        destinations:
          - {{ subset: v1, weight: {v1} }}
          - {{ subset: v2, weight: {v2} }}
"
        );
    }
    y
}

/// Saves the mesh as editors do: a new file renamed over the old one.
fn save(dir: &Path, text: &str) {
    let tmp = dir.join("mesh.yaml.tmp");
    std::fs::write(&tmp, text).expect("write the mesh");
    std::fs::rename(&tmp, dir.join("mesh.yaml")).expect("rename the mesh");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The control plane process and its files; killed and removed on drop.
struct Server {
    child: Child,
    dir: PathBuf,
    ads: SocketAddr,
    admin: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    fn start(api: Api, services: usize) -> Server {
        let dir = std::env::temp_dir().join(format!(
            "legate-xds-fanout-{}-{}",
            std::process::id(),
            api.name()
        ));
        std::fs::create_dir_all(&dir).expect("a temp dir");
        save(&dir, &mesh(services, false));
        let ads: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_legate-xds"))
            .arg("serve")
            .arg("--mesh")
            .arg(&dir)
            .args(["--listen", &ads.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--watch-interval", "50ms"])
            .env("LEGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start legate-xds");
        Server {
            child,
            dir,
            ads,
            admin,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the admin port answers `/proxies`.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                panic!("legate-xds exited before serving: {status}");
            }
            if get(self.admin, "/proxies").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "legate-xds admin not answering within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The control plane's CPU time so far (user + system), from
    /// `/proc/<pid>/stat` in clock ticks of 1/100 s (Linux's USER_HZ).
    fn cpu(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("/proc/<pid>/stat");
        // After the command name (in parentheses, maybe with spaces):
        // field 3 is the state; utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Duration::from_millis((f[11] + f[12]) * 10)
    }

    /// The control plane's resident memory: (now, peak), bytes.
    fn rss(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("/proc/<pid>/status");
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or(0)
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }
}

/// A plain HTTP/1.1 GET; the body.
fn get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or_default().to_string(),
        ));
    }
    Ok(body.to_string())
}

/// Streams `/proxies` reports, and how many are in sync on every type.
fn admin_in_sync(admin: SocketAddr) -> (usize, usize) {
    let Ok(body) = get(admin, "/proxies") else {
        return (0, 0);
    };
    let Ok(serde_json::Value::Array(proxies)) = serde_json::from_str(&body) else {
        return (0, 0);
    };
    let synced = proxies
        .iter()
        .filter(|p| {
            TYPES.iter().all(|t| {
                let s = &p["types"][sim::short(t)];
                s["sent"].is_string() && s["sent"] == s["acked"] && s["nack"].is_null()
            })
        })
        .count();
    (proxies.len(), synced)
}

async fn admin_in_sync_async(admin: SocketAddr) -> (usize, usize) {
    tokio::task::spawn_blocking(move || admin_in_sync(admin))
        .await
        .unwrap_or((0, 0))
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / (1024.0 * 1024.0))
}

/// Milliseconds, no unit.
fn ms0(d: Duration) -> String {
    format!("{}", d.as_millis())
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Nearest-rank percentile of sorted durations.
fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Waits until each proxy's `until` holds, all within `deadline`.
async fn all_within(
    proxies: &[SimProxy],
    deadline: Duration,
    what: &str,
    pred: impl Fn(&sim::Status) -> bool + Copy,
) {
    let end = tokio::time::Instant::now() + deadline;
    for (i, p) in proxies.iter().enumerate() {
        match tokio::time::timeout_at(end, p.until(pred)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{what}: {e}"),
            Err(_) => {
                let done = proxies[i..].iter().filter(|p| p.with_status(pred)).count();
                panic!(
                    "{what}: {} of {} proxies not done within {deadline:?}",
                    proxies.len() - i - done,
                    proxies.len()
                );
            }
        }
    }
}

async fn run(api: Api, cfg: &Config) -> Report {
    let n = cfg.proxies;
    let mut server = Server::start(api, cfg.services);
    server.wait_ready();
    if let Some(secs) = cfg.attach_delay {
        eprintln!(
            "fanout {}: control plane pid {}; waiting {secs} s (FANOUT_ATTACH_DELAY)",
            api.name(),
            server.pid()
        );
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }
    let (rss_idle, _) = server.rss();

    // Connect and sync.
    let connections = cfg.connections.min(n.max(1));
    let cpu0 = server.cpu();
    let t0 = Instant::now();
    let (channels, proxies) = connect(&server, api, n, cfg.services, connections).await;
    let initial_sync = t0.elapsed();
    let sync_bytes = proxies.iter().map(SimProxy::bytes).sum::<u64>();
    // The control plane agrees (it records an ACK once it has read it).
    admin_wait(server.admin, "every stream in sync", |streams, synced| {
        streams == n && synced == n
    })
    .await;
    let sync_cpu = server.cpu() - cpu0;
    let (rss_loaded, _) = server.rss();

    // Change the mesh.
    let before: Vec<HashMap<String, String>> = proxies.iter().map(|p| p.acked_versions()).collect();
    let responses = |t: &str| proxies.iter().map(|p| p.responses(t)).sum::<u64>();
    let counts = TYPES.map(responses);
    let cpu0 = server.cpu();
    let bytes0 = proxies.iter().map(SimProxy::bytes).sum::<u64>();
    save(&server.dir, &mesh(cfg.services, true));
    let saved = Instant::now();
    let end = tokio::time::Instant::now() + CHANGE_DEADLINE;
    let mut routes = Vec::with_capacity(n);
    let mut endpoints = Vec::with_capacity(n);
    for (p, old) in proxies.iter().zip(&before) {
        for (t, out) in [(ROUTE_TYPE, &mut routes), (ENDPOINT_TYPE, &mut endpoints)] {
            let at = tokio::time::timeout_at(end, p.acked_other_than(t, &old[t]))
                .await
                .unwrap_or_else(|_| panic!("{}: no new {t} within {CHANGE_DEADLINE:?}", p.node_id))
                .unwrap_or_else(|e| panic!("{e}"));
            out.push(at.saturating_duration_since(saved));
        }
    }
    routes.sort();
    endpoints.sort();
    admin_wait(server.admin, "every stream in sync", |streams, synced| {
        streams == n && synced == n
    })
    .await;
    let change_cpu = server.cpu() - cpu0;
    let (rss_changed, rss_peak) = server.rss();
    let change_bytes = proxies.iter().map(SimProxy::bytes).sum::<u64>() - bytes0;
    let mut pushed = [0; 4];
    for (i, t) in TYPES.iter().enumerate() {
        pushed[i] = responses(t) - counts[i];
    }
    for p in &proxies {
        if let Some(why) = p.with_status(|s| s.ended.clone()) {
            panic!("{}: stream ended: {why}", p.node_id);
        }
    }

    // Disconnect.
    drop(proxies);
    drop(channels);
    admin_wait(server.admin, "every stream closed", |streams, _| {
        streams == 0
    })
    .await;
    let (rss_closed, _) = server.rss();

    // The same again: memory the first round left behind is reused (a
    // steady state), or it grows (a leak).
    let (channels, proxies) = connect(&server, api, n, cfg.services, connections).await;
    admin_wait(server.admin, "every stream in sync", |streams, synced| {
        streams == n && synced == n
    })
    .await;
    let (rss_again, _) = server.rss();
    drop(proxies);
    drop(channels);
    admin_wait(server.admin, "every stream closed", |streams, _| {
        streams == 0
    })
    .await;
    drop(server);
    Report {
        api,
        proxies: n,
        connections,
        initial_sync,
        sync_cpu,
        change_cpu,
        routes,
        endpoints,
        pushed,
        rss_idle,
        rss_loaded,
        rss_changed,
        rss_peak,
        rss_closed,
        rss_again,
        sync_bytes,
        change_bytes,
    }
}

/// Connects `n` sidecars (services round robin) over `connections`
/// connections and waits until each has ACKed every type.
async fn connect(
    server: &Server,
    api: Api,
    n: usize,
    services: usize,
    connections: usize,
) -> (Vec<tonic::transport::Channel>, Vec<SimProxy>) {
    let channels = sim::connect(server.ads, connections)
        .await
        .expect("connect to the control plane");
    let proxies: Vec<SimProxy> = (0..n)
        .map(|i| {
            let service = format!("svc-{:02}", i % services);
            SimProxy::start(
                channels[i % connections].clone(),
                api,
                &format!("sidecar-{i}.{service}"),
                &service,
                "default",
            )
        })
        .collect();
    all_within(&proxies, SYNC_DEADLINE, "initial sync", sim::Status::synced).await;
    (channels, proxies)
}

/// Polls `/proxies` until `ok(streams, in_sync)` (at most 30 s).
async fn admin_wait(admin: SocketAddr, what: &str, ok: impl Fn(usize, usize) -> bool) {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let (streams, synced) = admin_in_sync_async(admin).await;
        if ok(streams, synced) {
            return;
        }
        assert!(
            Instant::now() < end,
            "/proxies: {what}: not within 30 s ({synced} of {streams} streams in sync)"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
