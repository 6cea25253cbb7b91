//! Load balancers and cluster discovery, observed through real requests.

mod common;

use common::*;
use std::collections::HashMap;

fn config(policy: &str, hash: &str, endpoints: &[(&Upstream, u32)]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|(u, w)| format!("{{ address: \"{}\", weight: {w} }}", u.addr))
        .collect();
    let clusters = format!(
        "  - name: svc\n    lb_policy: {policy}\n    endpoints: [{}]",
        eps.join(", ")
    );
    catch_all("svc", hash, &clusters)
}

async fn tally(
    addr: std::net::SocketAddr,
    n: usize,
    path: &str,
    headers: &[(&str, &str)],
) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = get(addr, "svc", path, headers).await;
        assert_eq!(r.status, 200, "{}", r.text());
        *counts
            .entry(r.header("x-upstream").unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_even_and_weighted() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let p = proxy(
        &config("round_robin", "", &[(&a, 1), (&b, 1), (&c, 1)]),
        &[],
    )
    .await;
    let counts = tally(p.listener_addr("web").unwrap(), 300, "/", &[]).await;
    assert_eq!(
        counts.values().copied().collect::<Vec<_>>(),
        vec![100; 3],
        "{counts:?}"
    );
    drop(p);

    let p = proxy(&config("round_robin", "", &[(&a, 3), (&b, 1)]), &[]).await;
    let counts = tally(p.listener_addr("web").unwrap(), 400, "/", &[]).await;
    assert_eq!((counts["a"], counts["b"]), (300, 100), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_reaches_every_endpoint() {
    let (a, b, c) = (
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
    );
    let p = proxy(&config("random", "", &[(&a, 1), (&b, 1), (&c, 1)]), &[]).await;
    let counts = tally(p.listener_addr("web").unwrap(), 300, "/", &[]).await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n > 50), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_request_avoids_the_busy_endpoint() {
    let (a, b) = (upstream("a").await, upstream("b").await);
    let p = proxy(&config("least_request", "", &[(&a, 1), (&b, 1)]), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    // Hold several slow requests open; P2C with two endpoints always
    // compares both, so they spread out and every quick request goes to the
    // endpoint with fewer in flight.
    let slow = tokio::spawn(async move { get(addr, "svc", "/sleep/1500", &[]).await });
    eventually("the slow request is in flight", || async {
        a.requests.load(std::sync::atomic::Ordering::SeqCst)
            + b.requests.load(std::sync::atomic::Ordering::SeqCst)
            == 1
    })
    .await;
    let busy = if a.requests.load(std::sync::atomic::Ordering::SeqCst) == 1 {
        "a"
    } else {
        "b"
    };
    // A quick request's endpoint is released just after its response is
    // out, so the client can ask again a moment before: wait for only the
    // slow request to be in flight before each quick one.
    let in_flight = |p: &legate::RunningProxy| {
        let p = p.admin_addr;
        async move {
            let req = http::Request::get(format!("http://{p}/clusters"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            send(&h1_client(), req)
                .await
                .text()
                .lines()
                .filter_map(|l| l.split("::rq_active::").nth(1))
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .sum::<u64>()
        }
    };
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..20 {
        eventually("only the slow request in flight", || async {
            in_flight(&p).await == 1
        })
        .await;
        let r = get(addr, "svc", "/", &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
        *counts
            .entry(r.header("x-upstream").unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(
        counts.get(busy),
        None,
        "quick requests avoided {busy}: {counts:?}"
    );
    assert_eq!(slow.await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_is_sticky_by_header_cookie_and_source_ip() {
    let ups = [
        upstream("a").await,
        upstream("b").await,
        upstream("c").await,
        upstream("d").await,
    ];
    let eps: Vec<(&Upstream, u32)> = ups.iter().map(|u| (u, 1)).collect();
    let hash = ", hash_policy: [{ header: x-user }, { cookie: session }]";
    let p = proxy(&config("ring_hash", hash, &eps), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    let mut chosen = std::collections::HashSet::new();
    for user in 0..40 {
        let u = format!("user-{user}");
        let counts = tally(addr, 5, "/", &[("x-user", &u)]).await;
        assert_eq!(counts.len(), 1, "{u} stuck to one endpoint: {counts:?}");
        chosen.extend(counts.into_keys());
    }
    assert!(
        chosen.len() >= 3,
        "40 users spread over endpoints: {chosen:?}"
    );
    let counts = tally(addr, 10, "/", &[("cookie", "theme=dark; session=abc123")]).await;
    assert_eq!(counts.len(), 1, "cookie hashing is sticky: {counts:?}");
    drop(p);

    let p = proxy(
        &config("ring_hash", ", hash_policy: [{ source_ip: true }]", &eps),
        &[],
    )
    .await;
    let counts = tally(p.listener_addr("web").unwrap(), 20, "/", &[]).await;
    assert_eq!(counts.len(), 1, "same source IP, same endpoint: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_dns_cluster_resolves_names() {
    let up = upstream("dns").await;
    let clusters = format!(
        "  - name: named\n    type: strict_dns\n    dns_refresh_rate: 100ms\n    endpoints: [{{ address: \"localhost:{}\" }}]",
        up.addr.port()
    );
    let yaml = catch_all("named", "", &clusters);
    let p = proxy(&yaml, &[]).await;
    let addr = p.listener_addr("web").unwrap();
    // "localhost" may resolve to ::1 as well as 127.0.0.1; the upstream only
    // listens on 127.0.0.1, so wait for resolution, then accept any success.
    eventually("DNS resolved", || async {
        admin_get(&p, "/clusters")
            .await
            .text()
            .contains(&format!("127.0.0.1:{}", up.addr.port()))
    })
    .await;
    let mut ok = 0;
    for _ in 0..10 {
        if get(addr, "svc", "/", &[]).await.status == 200 {
            ok += 1;
        }
    }
    assert!(ok >= 5, "{ok}/10 succeeded");
}
