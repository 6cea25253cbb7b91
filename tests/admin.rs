//! The admin server: readiness, metrics, config dump, clusters, listeners.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints() {
    let up = upstream("up").await;
    let clusters = format!(
        "  - name: admin-test\n    endpoints: [{{ address: \"{}\" }}]",
        up.addr
    );
    let p = proxy(&catch_all("admin-test", "", &clusters), &[]).await;
    let addr = p.listener_addr("web").unwrap();
    for _ in 0..3 {
        assert_eq!(get(addr, "x", "/", &[]).await.status, 200);
    }
    assert_eq!(get(addr, "x", "/status/503", &[]).await.status, 503);

    let r = admin_get(&p, "/ready").await;
    assert_eq!((r.status, r.text().as_str()), (200, "LIVE\n"));

    let stats = admin_get(&p, "/stats/prometheus").await.text();
    for needle in [
        "legate_cluster_upstream_rq_total{cluster=\"admin-test\",response_code_class=\"2xx\"} 3",
        "legate_cluster_upstream_rq_total{cluster=\"admin-test\",response_code_class=\"5xx\"} 1",
        "legate_cluster_upstream_cx_total{cluster=\"admin-test\"} 1",
        "legate_cluster_upstream_rq_time_milliseconds_bucket{cluster=\"admin-test\",le=\"+Inf\"} 4",
        "# HELP legate_http_downstream_rq_total",
        "legate_listener_downstream_cx_total{listener=\"web\"}",
    ] {
        assert!(stats.contains(needle), "missing {needle}\n{stats}");
    }

    let dump: serde_json::Value =
        serde_json::from_slice(&admin_get(&p, "/config_dump").await.body).unwrap();
    assert_eq!(dump["clusters"][0]["name"], "admin-test");
    assert_eq!(
        dump["listeners"][0]["filter_chains"][0]["http"]["route_config"]["virtual_hosts"][0]["name"],
        "all"
    );

    let clusters = admin_get(&p, "/clusters").await.text();
    assert!(
        clusters.contains(&format!("admin-test::{}::health_flags::healthy", up.addr)),
        "{clusters}"
    );
    assert!(
        clusters.contains(&format!("admin-test::{}::cx_idle::1", up.addr)),
        "{clusters}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&admin_get(&p, "/clusters?format=json").await.body).unwrap();
    assert_eq!(
        json["clusters"][0]["endpoints"][0]["address"],
        up.addr.to_string()
    );

    let listeners: serde_json::Value =
        serde_json::from_slice(&admin_get(&p, "/listeners").await.body).unwrap();
    assert_eq!(listeners[0]["address"], addr.to_string());

    assert_eq!(
        admin_get(&p, "/quitquitquit").await.status,
        405,
        "quitquitquit needs POST"
    );
}
