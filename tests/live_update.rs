//! Live configuration updates (what xDS drives): applied whole or not at
//! all, without failing a request in flight, visible to keep-alive
//! connections at once, keeping the state of clusters that did not change.

mod common;

use bytes::Bytes;
use common::*;
use http::Request;
use http_body_util::Full;
use legate_xds::model::Config;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// One listener "web" splitting between clusters v1 and v2 with the given
/// weights, plus `extra` appended to the YAML.
fn split(v1: &Upstream, v2: &Upstream, w1: u32, w2: u32, extra: &str) -> Config {
    let yaml = format!(
        r#"
admin: {{ address: "127.0.0.1:0" }}
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: {{ prefix: /gone }}
                direct_response: {{ status: 200, body: "still here" }}
              - match: {{ prefix: / }}
                route:
                  weighted_clusters:
                    - {{ name: v1, weight: {w1} }}
                    - {{ name: v2, weight: {w2} }}
clusters:
  - name: v1
    endpoints: [{{ address: "{a1}" }}]
  - name: v2
    endpoints: [{{ address: "{a2}" }}]
{extra}"#,
        a1 = v1.addr,
        a2 = v2.addr,
    );
    legate_xds::parse_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The HTTP connection manager of listener `i`'s first filter chain.
fn hcm(l: &mut legate_xds::model::Listener) -> &mut legate_xds::model::HttpConnectionManager {
    l.filter_chains[0]
        .http
        .as_mut()
        .expect("an HTTP filter chain")
}

fn web(p: &legate::RunningProxy) -> SocketAddr {
    p.listener_addr("web").expect("listener web")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_change_under_load_moves_at_once_and_fails_nothing() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let proxy = legate::start(split(&v1, &v2, 100, 0, "")).await.unwrap();
    let load = Load::start(web(&proxy), "/x", 8);
    load.more(500).await;
    assert_eq!(v2.requests.load(Ordering::SeqCst), 0);

    proxy
        .update(split(&v1, &v2, 0, 100, ""))
        .expect("update applies");
    load.mark.store(true, Ordering::SeqCst);
    load.more(500).await;
    let (ok, failed, after) = load.finish().await;
    assert_eq!(failed, 0, "requests failed during the update ({ok} ok)");
    assert_eq!(
        after.get("v1"),
        None,
        "requests started after the update still went to v1: {after:?}"
    );
    // The same keep-alive connections carried the traffic: the clients
    // opened no new connection to the proxy because of the update.
    assert!(v2.requests.load(Ordering::SeqCst) >= 500);
}

#[tokio::test]
async fn unchanged_clusters_keep_their_pools_and_endpoint_changes_apply() {
    let (v1, v2, v3) = (
        upstream("v1").await,
        upstream("v2").await,
        upstream("v3").await,
    );
    let proxy = legate::start(split(&v1, &v2, 100, 0, "")).await.unwrap();
    let addr = web(&proxy);
    for _ in 0..5 {
        assert_eq!(get(addr, "x", "/a", &[]).await.status, 200);
    }
    let conns = v1.connections.load(Ordering::SeqCst);
    assert_eq!(conns, 1, "one pooled upstream connection");

    // v2 gains an endpoint; v1 is untouched: its pool must survive.
    let mut c = split(&v1, &v2, 100, 0, "");
    c.clusters[1].endpoints.push(legate_xds::model::Endpoint {
        address: v3.addr.to_string(),
        ..Default::default()
    });
    proxy.update(c).unwrap();
    for _ in 0..5 {
        assert_eq!(get(addr, "x", "/a", &[]).await.status, 200);
    }
    assert_eq!(
        v1.connections.load(Ordering::SeqCst),
        conns,
        "the update dropped v1's pooled connection"
    );
    let clusters = admin_get(&proxy, "/clusters").await.text();
    assert!(
        clusters.contains(&format!("v2::{}::", v3.addr)),
        "{clusters}"
    );

    // A changed setting makes a new cluster (new pool).
    let mut c = split(&v1, &v2, 100, 0, "");
    c.clusters[0].connect_timeout = legate_xds::duration::Dur::from_secs(2);
    proxy.update(c).unwrap();
    assert_eq!(get(addr, "x", "/a", &[]).await.status, 200);
    assert_eq!(v1.connections.load(Ordering::SeqCst), conns + 1);
}

#[tokio::test]
async fn route_removal_and_invalid_updates() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let proxy = legate::start(split(&v1, &v2, 1, 0, "")).await.unwrap();
    let addr = web(&proxy);
    assert_eq!(get(addr, "x", "/gone", &[]).await.text(), "still here");

    // An invalid update is refused whole, naming the field; the last good
    // configuration keeps serving.
    let mut bad = split(&v1, &v2, 0, 1, "");
    bad.clusters[1].endpoints[0].address = "10.0.0.1:99999".into();
    let err = proxy.update(bad).unwrap_err().to_string();
    assert!(
        err.contains("clusters[1].endpoints[0].address"),
        "error does not name the field: {err}"
    );
    let r = get(addr, "x", "/a", &[]).await;
    assert_eq!(r.header("x-upstream"), Some("v1"), "old config not serving");

    // A route removed: its requests fall to the next route.
    let mut c = split(&v1, &v2, 1, 0, "");
    let rc = hcm(&mut c.listeners[0]).route_config.as_mut().unwrap();
    rc.virtual_hosts[0].routes.remove(0);
    proxy.update(c).unwrap();
    assert_eq!(
        get(addr, "x", "/gone", &[]).await.header("x-upstream"),
        Some("v1")
    );
}

#[tokio::test]
async fn listeners_are_added_changed_and_removed() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let extra = r#"
route_configs:
  - name: shared
    virtual_hosts:
      - name: all
        domains: ["*"]
        routes: [{ match: { prefix: / }, route: { cluster: v2 } }]
"#;
    let proxy = legate::start(split(&v1, &v2, 1, 0, "")).await.unwrap();
    let web_addr = web(&proxy);
    // Held open across the update: it must keep working until it closes.
    let client = h1_client();
    let send_web = |c: &HttpClient| {
        let req = Request::get(format!("http://{web_addr}/a"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let c = c.clone();
        async move { send(&c, req).await }
    };
    assert_eq!(send_web(&client).await.status, 200);

    // Add a listener using a named route configuration.
    let mut c = split(&v1, &v2, 1, 0, extra);
    let mut api = c.listeners[0].clone();
    api.name = "api".into();
    hcm(&mut api).route_config = None;
    hcm(&mut api).rds = Some("shared".into());
    c.listeners.push(api.clone());
    proxy.update(c.clone()).unwrap();
    let api_addr = proxy.listener_addr("api").expect("api listener bound");
    assert_eq!(
        get(api_addr, "x", "/", &[]).await.header("x-upstream"),
        Some("v2")
    );
    assert_eq!(proxy.listener_addr("web"), Some(web_addr), "web moved");

    // Changing the named route configuration changes the listener using it.
    c.route_configs[0].virtual_hosts[0].routes[0]
        .route
        .as_mut()
        .unwrap()
        .cluster = Some("v1".into());
    proxy.update(c.clone()).unwrap();
    assert_eq!(
        get(api_addr, "x", "/", &[]).await.header("x-upstream"),
        Some("v1")
    );

    // Remove "web" while a request is in flight on it: the request is
    // answered (and its connection then closed), new connections refused.
    let slow = {
        let req = Request::get(format!("http://{web_addr}/sleep/300"))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let c = client.clone();
        tokio::spawn(async move { send(&c, req).await })
    };
    eventually("slow request reached v1", || async {
        v1.inflight.load(Ordering::SeqCst) == 1
    })
    .await;
    c.listeners.remove(0);
    proxy.update(c.clone()).unwrap();
    eventually("web stops accepting", || async {
        tokio::net::TcpStream::connect(web_addr).await.is_err()
    })
    .await;
    assert_eq!(proxy.listener_addr("web"), None);
    let r = slow.await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    let listeners = admin_get(&proxy, "/listeners").await.text();
    assert!(
        listeners.contains("api") && !listeners.contains("web"),
        "{listeners}"
    );
    assert_eq!(get(api_addr, "x", "/", &[]).await.status, 200);
}

#[tokio::test]
async fn dynamic_configs_may_name_clusters_and_routes_not_yet_delivered() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let dynamic = r#"
dynamic:
  servers: ["127.0.0.1:1"]
  node: { id: test }
"#;
    // With a control plane, a route to a cluster that does not exist is not
    // an error: such requests get 503, as Envoy answers (flag NC).
    let mut c = split(&v1, &v2, 1, 1, dynamic);
    c.clusters.remove(1);
    let proxy = legate::start(c).await.unwrap();
    let addr = web(&proxy);
    let mut statuses = std::collections::BTreeSet::new();
    for _ in 0..40 {
        statuses.insert(get(addr, "x", "/a", &[]).await.status);
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [200, 503]);
    // Not ready until the control plane has delivered a configuration.
    assert_eq!(admin_get(&proxy, "/ready").await.status, 503);
    proxy.handle().set_initialized();
    assert_eq!(admin_get(&proxy, "/ready").await.status, 200);

    // An `rds` name not delivered yet answers 404.
    let mut c = split(&v1, &v2, 1, 1, dynamic);
    hcm(&mut c.listeners[0]).route_config = None;
    hcm(&mut c.listeners[0]).rds = Some("later".into());
    proxy.update(c).unwrap();
    assert_eq!(get(addr, "x", "/a", &[]).await.status, 404);

    // Without a control plane both are errors.
    let mut c = split(&v1, &v2, 1, 1, "");
    c.clusters.remove(1);
    let err = proxy.update(c).unwrap_err().to_string();
    assert!(err.contains("unknown cluster \"v2\""), "{err}");
}

#[tokio::test]
async fn updates_are_refused_while_draining_and_admin_cannot_change() {
    let (v1, v2) = (upstream("v1").await, upstream("v2").await);
    let proxy = legate::start(split(&v1, &v2, 1, 0, "")).await.unwrap();
    let mut c = split(&v1, &v2, 1, 0, "");
    c.admin.address = "127.0.0.1:1".into();
    let err = proxy.update(c).unwrap_err().to_string();
    assert!(err.contains("admin"), "{err}");
    let handle = proxy.handle();
    assert!(
        tokio::time::timeout(Duration::from_secs(10), proxy.drain())
            .await
            .unwrap()
    );
    let err = handle
        .update(split(&v1, &v2, 1, 0, ""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("draining"), "{err}");
}
