//! How long a large xDS push takes to apply, and the memory it adds.
//!
//! `cargo bench --bench xds_push` (or `-- 2000 10` for other sizes)
//!
//! A test ADS server (tests/common/ads.rs) runs in this process, Legate
//! (the release binary, one worker) as a child process, both on 127.0.0.1. After a small first configuration has been applied, the
//! server pushes N `eds` clusters (CDS) and their N ClusterLoadAssignments
//! with E endpoints each (EDS); the time is from the push until the proxy
//! has ACKed both. Then one cluster's endpoints change (a one-resource EDS
//! push), then every cluster's (a full EDS push). For each API (state of
//! the world and delta) it prints the times and the proxy's RSS growth
//! over the large push (VmRSS of the Legate process).

#[path = "../tests/common/ads.rs"]
mod ads;

use ads::{AdsServer, any};
use legate_xds::model;
use legate_xds::translate::{CLUSTER_TYPE, ENDPOINT_TYPE, cluster_to_xds};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CDS and EDS resources for `n` eds clusters of `e` endpoints; `shift`
/// moves the endpoints' ports so a second set differs from the first.
type Named = Vec<(String, ads::Any)>;

fn resources(n: usize, e: usize, shift: u16) -> (Named, Named) {
    let mut cds = Vec::with_capacity(n);
    let mut eds = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("svc-{i:05}");
        let m = model::Cluster {
            name: name.clone(),
            discovery: model::DiscoveryType::Eds,
            endpoints: (0..e)
                .map(|j| model::Endpoint {
                    address: format!("10.{}.{}.{}:{}", i / 250, i % 250, j + 1, 8080 + shift),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let (cluster, la) = cluster_to_xds(&m);
        cds.push((name.clone(), any(&cluster)));
        if let Some(la) = la {
            eds.push((name, any(&la)));
        }
    }
    (cds, eds)
}

/// Names carried by responses of `version` of `type_url` that the proxy
/// ACKed.
fn acked_names(ads: &AdsServer, type_url: &str, version: &str) -> BTreeSet<String> {
    let acked: BTreeSet<String> = ads
        .requests()
        .into_iter()
        .filter(|r| r.type_url == type_url && r.error.is_none() && !r.nonce.is_empty())
        .map(|r| r.nonce)
        .collect();
    ads.sent()
        .into_iter()
        .filter(|s| s.type_url == type_url && s.version == version && acked.contains(&s.nonce))
        .flat_map(|s| s.names)
        .collect()
}

/// Waits until, for each (type, version, names wanted), the proxy has ACKed
/// responses of that version carrying all those names.
async fn wait_acked(
    ads: &AdsServer,
    want: &[(&str, &str, &BTreeSet<String>)],
    limit: Duration,
) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if want
            .iter()
            .all(|(t, v, names)| acked_names(ads, t, v).is_superset(names))
        {
            return Some(t0.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("timed out".into(), |d| {
        format!("{:.0} ms", d.as_secs_f64() * 1000.0)
    })
}

async fn run(api: &str, n: usize, e: usize) {
    let ads = AdsServer::start().await;
    let yaml = format!(
        "admin: {{ address: \"127.0.0.1:0\" }}\n\
         dynamic: {{ servers: [\"{}\"], node: {{ id: bench }}, api: {api} }}\n",
        ads.addr
    );
    let dir = std::env::temp_dir().join(format!("legate-xds-push-{}-{api}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let file = dir.join("legate.yaml");
    std::fs::write(&file, yaml).expect("write the bench config");
    // A small first configuration, so the large push is an update.
    let (cds0, eds0) = resources(1, 1, 0);
    ads.set(CLUSTER_TYPE, "0", cds0);
    ads.set(ENDPOINT_TYPE, "0", eds0);
    ads.set(ads::LISTENER, "0", Vec::new());
    // The proxy runs as its own process, so its memory is measured alone.
    let mut proxy = std::process::Command::new(env!("CARGO_BIN_EXE_legate"))
        .args([
            "--log-level",
            "warn",
            "--concurrency",
            "1",
            "run",
            "--config",
        ])
        .arg(&file)
        .spawn()
        .expect("legate starts");
    let pid = proxy.id();
    let limit = Duration::from_secs(120);
    let first: BTreeSet<String> = ["svc-00000".to_string()].into();
    if wait_acked(
        &ads,
        &[(CLUSTER_TYPE, "0", &first), (ENDPOINT_TYPE, "0", &first)],
        limit,
    )
    .await
    .is_none()
    {
        eprintln!("{api}: the first configuration was not acknowledged");
        let _ = proxy.kill();
        let _ = proxy.wait();
        return;
    }
    let (cds, eds) = resources(n, e, 0);
    let (_, eds_moved) = resources(n, e, 1);
    let mut one_moved = eds.clone();
    one_moved[0] = eds_moved[0].clone();
    let before = rss_kb(pid);

    ads.set(ENDPOINT_TYPE, "1", eds.clone());
    ads.set(CLUSTER_TYPE, "1", cds);
    // svc-00000 is the same as in the first configuration (and in v3 the
    // same as in v2): a delta server does not send it again.
    let every: BTreeSet<String> = eds
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !first.contains(n))
        .collect();
    let push = wait_acked(
        &ads,
        &[(CLUSTER_TYPE, "1", &every), (ENDPOINT_TYPE, "1", &every)],
        limit,
    )
    .await;
    let after = rss_kb(pid);

    ads.set(ENDPOINT_TYPE, "2", one_moved);
    let one = wait_acked(&ads, &[(ENDPOINT_TYPE, "2", &first)], limit).await;
    ads.set(ENDPOINT_TYPE, "3", eds_moved);
    let all = wait_acked(&ads, &[(ENDPOINT_TYPE, "3", &every)], limit).await;

    println!(
        "| {api} | {n} x {e} | {} | {:.1} MB | {} | {} |",
        ms(push),
        after.saturating_sub(before) as f64 / 1024.0,
        ms(one),
        ms(all),
    );
    let _ = proxy.kill();
    let _ = proxy.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    // `cargo bench` passes `--bench`; sizes are the first two numbers given.
    let nums: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let n = nums.first().copied().unwrap_or(1000);
    let e = nums.get(1).copied().unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "| api | clusters x endpoints | push applied (CDS+EDS ACKed) | RSS added | one cluster's endpoints change | every cluster's endpoints change |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for api in ["sotw", "delta"] {
        rt.block_on(run(api, n, e));
    }
}
