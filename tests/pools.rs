//! Upstream connection pools: the HTTP/2 stream limit and the HTTP/1 idle
//! connection cap.

mod common;

use common::*;
use std::sync::atomic::Ordering;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_stream_limit_queues_excess_requests() {
    let up = upstream("h2").await;
    let clusters = format!(
        "  - name: h2\n    protocol: http2\n    http2_max_concurrent_streams: 3\n    endpoints: [{{ address: \"{}\" }}]",
        up.addr
    );
    let p = proxy(&catch_all("h2", "", &clusters), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..12 {
        tasks.spawn(async move { get(addr, "svc", "/sleep/150", &[]).await.status });
    }
    let statuses = tasks.join_all().await;
    assert_eq!(statuses, vec![200; 12], "every queued request is served");
    assert_eq!(
        up.max_inflight.load(Ordering::SeqCst),
        3,
        "never more than 3 streams at once"
    );
    assert_eq!(
        up.connections.load(Ordering::SeqCst),
        1,
        "one multiplexed connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_pool_keeps_at_most_the_configured_idle_connections() {
    let up = upstream("h1").await;
    let clusters = format!(
        "  - name: h1\n    max_idle_connections_per_endpoint: 2\n    endpoints: [{{ address: \"{}\" }}]",
        up.addr
    );
    let p = proxy(&catch_all("h1", "", &clusters), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    // Six concurrent requests need six upstream connections...
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        tasks.spawn(async move { get(addr, "svc", "/sleep/200", &[]).await.status });
    }
    assert_eq!(tasks.join_all().await, vec![200; 6]);
    assert_eq!(up.max_inflight.load(Ordering::SeqCst), 6);
    assert_eq!(up.connections.load(Ordering::SeqCst), 6);
    // ...but only two stay pooled afterwards.
    eventually("idle connections settle at the cap", || async {
        admin_get(&p, "/clusters")
            .await
            .text()
            .contains(&format!("h1::{}::cx_idle::2", up.addr))
    })
    .await;
    // Sequential requests now reuse the pooled connections: no new ones.
    for _ in 0..5 {
        assert_eq!(get(addr, "svc", "/", &[]).await.status, 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), 6);
}
