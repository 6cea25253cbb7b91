//! Shared test harness: real upstream servers on 127.0.0.1 ephemeral ports,
//! an in-process Legate started from YAML, and real hyper clients.
#![allow(dead_code)]

use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use legate::RunningProxy;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// A real HTTP/1.1 + HTTP/2 upstream. It answers with a JSON description of
/// the request it saw. Special paths: `/status/N` answers N, `/sleep/MS`
/// waits MS milliseconds first, a path ending in `/echo` returns the request body.
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: &'static str,
    pub connections: Arc<AtomicUsize>,
    pub requests: Arc<AtomicUsize>,
    /// Requests being answered right now, and the most ever at once.
    pub inflight: Arc<AtomicUsize>,
    pub max_inflight: Arc<AtomicUsize>,
}

pub async fn upstream(name: &'static str) -> Upstream {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(AtomicUsize::new(0));
    let inflight = Arc::new(AtomicUsize::new(0));
    let max_inflight = Arc::new(AtomicUsize::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    let (fl, mx) = (inflight.clone(), max_inflight.clone());
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            let (fl, mx) = (fl.clone(), mx.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    r.fetch_add(1, Ordering::SeqCst);
                    let now = fl.fetch_add(1, Ordering::SeqCst) + 1;
                    mx.fetch_max(now, Ordering::SeqCst);
                    let fl = fl.clone();
                    async move {
                        let resp = answer(name, req).await;
                        fl.fetch_sub(1, Ordering::SeqCst);
                        resp
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        name,
        connections,
        requests,
        inflight,
        max_inflight,
    }
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_string();
    let mut status = 200;
    // "/sleep/MS" and "/status/N" work anywhere in the path.
    let segment = |key: &str| {
        path.split_once(key)
            .and_then(|(_, rest)| rest.split('/').next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    if let Some(ms) = segment("/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(code) = segment("/status/") {
        status = code as u16;
    }
    let mut headers = BTreeMap::new();
    for (k, v) in req.headers() {
        headers.insert(k.as_str().to_string(), v.to_str().unwrap_or("").to_string());
    }
    let info = serde_json::json!({
        "name": name,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        "authority": req.uri().authority().map(|a| a.as_str()),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let body = if path.ends_with("/echo") {
        req.into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default()
    } else {
        Bytes::from(info.to_string())
    };
    let mut resp = hyper::Response::new(Full::new(body));
    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
    resp.headers_mut()
        .insert("x-upstream", http::HeaderValue::from_static(name));
    Ok(resp)
}

/// Starts Legate in-process from YAML. `{{NAME}}` placeholders are replaced
/// from `vars`; listeners and admin should use port 0.
pub async fn proxy(yaml: &str, vars: &[(&str, String)]) -> RunningProxy {
    let mut text = yaml.to_string();
    for (k, v) in vars {
        text = text.replace(&format!("{{{{{k}}}}}"), v);
    }
    if !text.contains("admin:") {
        text = format!("admin: {{ address: \"127.0.0.1:0\" }}\n{text}");
    }
    let config =
        legate_xds::parse_str(&text).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"));
    legate::start(config).await.expect("proxy starts")
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The upstream's JSON description of the request it received.
    pub fn seen(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not upstream JSON: {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn h1_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub async fn send(client: &HttpClient, req: Request<Full<Bytes>>) -> Resp {
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Resp {
        status,
        headers,
        body,
    }
}

/// GET `path` on `addr` with a Host header and extra headers, over HTTP/1.1.
pub async fn get(addr: SocketAddr, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let mut b = Request::get(format!("http://{addr}{path}")).header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(&h1_client(), b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Polls `f` until it returns true or 10 s pass.
pub async fn eventually<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within(10, what, f).await;
}

/// Polls `f` until it holds, for up to `secs` seconds.
pub async fn within<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fetches an admin endpoint's body.
pub async fn admin_get(proxy: &RunningProxy, path: &str) -> Resp {
    let req = Request::get(format!("http://{}{path}", proxy.admin_addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    send(&h1_client(), req).await
}

/// The value of the Prometheus sample `name{labels}` (labels as printed,
/// e.g. `type="RDS",result="ack"`; empty for none), if present.
pub async fn metric(proxy: &RunningProxy, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let text = admin_get(proxy, "/stats/prometheus").await.text();
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (key, value) = l.rsplit_once(' ')?;
        let (n, rest) = match key.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (key, ""),
        };
        if n != name {
            return None;
        }
        let all = labels
            .iter()
            .all(|(k, v)| rest.split(',').any(|kv| kv == format!("{k}=\"{v}\"")));
        all.then(|| value.parse().ok()).flatten()
    })
}

/// YAML for one listener "web" on a free port whose only route sends every
/// request to `cluster`, followed by `clusters` (YAML list items).
/// `route_extra` is appended inside the route action (e.g. `, timeout: 1s`).
pub fn catch_all(cluster: &str, route_extra: &str, clusters: &str) -> String {
    format!(
        r#"
listeners:
  - name: web
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            routes:
              - match: {{ prefix: / }}
                route: {{ cluster: {cluster}{route_extra} }}
clusters:
{clusters}
"#
    )
}

/// Writes raw bytes to `addr` and returns everything answered until the
/// peer closes (or 5 s pass): for requests no HTTP client would send.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Keep-alive clients looping on `addr` + `path` until `finish`: counts
/// successes, failures (anything but 200, or a transport error) and, for
/// requests started after `mark`, answers per upstream name.
pub struct Load {
    stop: Arc<AtomicBool>,
    /// Set it: requests started from then on are counted per upstream.
    pub mark: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    after: Arc<std::sync::Mutex<std::collections::BTreeMap<String, usize>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addr: SocketAddr, path: &'static str, workers: usize) -> Load {
        Load::start_with_host(addr, None, path, workers)
    }

    /// As [`Load::start`], sending `Host: host` when given.
    pub fn start_with_host(
        addr: SocketAddr,
        host: Option<&'static str>,
        path: &'static str,
        workers: usize,
    ) -> Load {
        let mut l = Load {
            stop: Arc::default(),
            mark: Arc::default(),
            ok: Arc::default(),
            failed: Arc::default(),
            after: Arc::default(),
            tasks: Vec::new(),
        };
        for _ in 0..workers {
            let (stop, mark, ok, failed, after) = (
                l.stop.clone(),
                l.mark.clone(),
                l.ok.clone(),
                l.failed.clone(),
                l.after.clone(),
            );
            l.tasks.push(tokio::spawn(async move {
                let client = h1_client();
                while !stop.load(Ordering::SeqCst) {
                    let marked = mark.load(Ordering::SeqCst);
                    let mut req = Request::get(format!("http://{addr}{path}"));
                    if let Some(h) = host {
                        req = req.header(http::header::HOST, h);
                    }
                    let req = req.body(Full::new(Bytes::new())).unwrap();
                    match client.request(req).await {
                        Ok(resp) if resp.status() == 200 => {
                            let name = resp
                                .headers()
                                .get("x-upstream")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("?")
                                .to_string();
                            let body = http_body_util::BodyExt::collect(resp.into_body()).await;
                            if body.is_err() {
                                failed.fetch_add(1, Ordering::SeqCst);
                                continue;
                            }
                            ok.fetch_add(1, Ordering::SeqCst);
                            if marked {
                                *after.lock().unwrap().entry(name).or_default() += 1;
                            }
                        }
                        Ok(resp) => {
                            eprintln!("load: status {}", resp.status());
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(e) => {
                            eprintln!("load: {e}");
                            failed.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }));
        }
        l
    }

    pub fn ok(&self) -> usize {
        self.ok.load(Ordering::SeqCst)
    }

    /// Waits for `n` more successful requests.
    pub async fn more(&self, n: usize) {
        let target = self.ok() + n;
        within(20, &format!("{n} more requests under load"), || async {
            self.ok() >= target
        })
        .await;
    }

    /// Stops the clients; returns (ok, failed, per-upstream counts after the mark).
    pub async fn finish(self) -> (usize, usize, std::collections::BTreeMap<String, usize>) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let after = self.after.lock().unwrap().clone();
        (
            self.ok.load(Ordering::SeqCst),
            self.failed.load(Ordering::SeqCst),
            after,
        )
    }
}

/// A proxy with one listener `listener` on a free port, one virtual host
/// for every domain (`vhost_extra`: more of its fields, one YAML line), the
/// `routes` (YAML list items, indented 14 spaces) and `clusters` (YAML list
/// items, indented 2); returns it and the listener's address.
pub async fn one_vhost(
    listener: &str,
    vhost_extra: &str,
    routes: &str,
    clusters: &str,
) -> (RunningProxy, SocketAddr) {
    let yaml = format!(
        r#"
listeners:
  - name: {listener}
    address: "127.0.0.1:0"
    http:
      route_config:
        virtual_hosts:
          - name: all
            domains: ["*"]
            {vhost_extra}
            routes:
{routes}
clusters:
{clusters}
"#
    );
    let p = proxy(&yaml, &[]).await;
    let addr = p.listener_addr(listener).unwrap();
    (p, addr)
}

/// The error message of a configuration whose one route is
/// `{ match: { prefix: / }, <route_fields> }` (one flow-style line; a
/// cluster `c` exists); empty when it is valid.
pub fn route_errors(route_fields: &str) -> String {
    let yaml = format!(
        "listeners:\n  - name: l\n    address: \"127.0.0.1:0\"\n    http:\n      route_config:\n        virtual_hosts:\n          - name: all\n            domains: [\"*\"]\n            routes:\n              - {{ match: {{ prefix: / }}, {route_fields} }}\nclusters:\n  - {{ name: c, endpoints: [{{ address: \"127.0.0.1:1\" }}] }}\n"
    );
    legate_xds::parse_str(&yaml)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default()
}

/// GETs each path (host `x`) and checks its status and that the response
/// has the headers `x-route: r` and `x-vhost: v` (a route's and a virtual
/// host's response header changes).
pub async fn expect_route_and_vhost_headers(addr: SocketAddr, cases: &[(&str, u16)]) {
    for &(path, status) in cases {
        let r = get(addr, "x", path, &[]).await;
        assert_eq!(r.status, status, "{path}");
        assert_eq!(r.header("x-route"), Some("r"), "{path}: {:?}", r.headers);
        assert_eq!(r.header("x-vhost"), Some("v"), "{path}: {:?}", r.headers);
    }
}
