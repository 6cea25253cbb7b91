//! `legate demo`: two small upstream services and a proxy splitting traffic
//! between them 80/20, from the embedded `examples/demo.yaml`.

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;

/// The demo configuration, also shipped as `examples/demo.yaml`.
pub const DEMO_CONFIG: &str = include_str!("../examples/demo.yaml");

/// Starts a tiny HTTP/1.1 + HTTP/2 server answering `hello from NAME`.
pub async fn start_upstream(name: &'static str, addr: &str) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<Incoming>| async move {
                    let body = format!("hello from {name} (path {})\n", req.uri().path());
                    let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                    resp.headers_mut()
                        .insert("x-served-by", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(resp)
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

pub async fn run(listen: &str, admin: &str) -> ExitCode {
    let mut config = match legate_xds::parse_str(DEMO_CONFIG) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: embedded demo config: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut upstreams = Vec::new();
    for name in ["v1", "v2"] {
        match start_upstream(name, "127.0.0.1:0").await {
            Ok(a) => upstreams.push(a),
            Err(e) => {
                eprintln!("error: cannot start demo upstream {name}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    for (cluster, addr) in config.clusters.iter_mut().zip(&upstreams) {
        for ep in &mut cluster.endpoints {
            ep.address = addr.to_string();
        }
    }
    config.admin.address = admin.to_string();
    if let Some(l) = config.listeners.first_mut() {
        l.address = listen.to_string();
    }
    let proxy = match crate::start(config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some((_, p)) = proxy.listeners().into_iter().next() else {
        eprintln!("error: the demo config has no listener");
        return ExitCode::FAILURE;
    };
    let a = proxy.admin_addr;
    println!(
        "\nLegate demo is running.\n\
         \x20 proxy  http://{p}   80% -> reviews-v1 ({}), 20% -> reviews-v2 ({})\n\
         \x20 admin  http://{a}\n\n\
         Try:\n\
         \x20 curl -s http://{p}/reviews\n\
         \x20 for i in $(seq 100); do curl -s http://{p}/reviews; done | sort | uniq -c\n\
         \x20 curl -s -H 'x-version: v2' http://{p}/reviews      # A/B by header\n\
         \x20 curl -s http://{p}/v1/anything                     # prefix rewrite to v1\n\
         \x20 curl -si http://{p}/old-reviews                    # redirect\n\
         \x20 curl -s http://{p}/healthz                         # direct response\n\
         \x20 curl -s http://{a}/stats/prometheus | grep legate_cluster_upstream_rq_total\n\
         \x20 curl -s http://{a}/config_dump\n\n\
         Ctrl-C to stop (in-flight requests drain first).",
        upstreams[0], upstreams[1]
    );
    proxy.serve_until_stopped().await;
    ExitCode::SUCCESS
}
