//! Route matching over a 1,000-route table (compiled once, matched per
//! request): the first route, the last route, a miss, and a header match;
//! plus virtual-host selection among 1,000 domains.

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use legate::cluster::Cluster;
use legate::route::{Clusters, RequestView, RouteTable};
use legate_xds::model::{self, Config};
use std::collections::HashMap;
use std::hint::black_box;

fn table(routes: usize, vhosts: usize) -> RouteTable {
    let mut yaml = String::from(
        "clusters:\n  - name: c\n    endpoints: [{ address: \"127.0.0.1:1\" }]\nlisteners:\n  - name: l\n    address: 127.0.0.1:0\n    http:\n      route_config:\n        virtual_hosts:\n",
    );
    for v in 0..vhosts {
        yaml.push_str(&format!(
            "          - name: v{v}\n            domains: [\"host{v}.example.com\"]\n            routes: [{{ match: {{ prefix: / }}, route: {{ cluster: c }} }}]\n"
        ));
    }
    yaml.push_str("          - name: big\n            domains: [\"*\"]\n            routes:\n");
    for r in 0..routes {
        if r % 10 == 9 {
            yaml.push_str(&format!(
                "              - {{ match: {{ prefix: /svc{r}/, headers: [{{ name: x-tier, exact: gold }}] }}, route: {{ cluster: c }} }}\n"
            ));
        } else {
            yaml.push_str(&format!(
                "              - {{ match: {{ prefix: /svc{r}/ }}, route: {{ cluster: c }} }}\n"
            ));
        }
    }
    let config: Config = legate_xds::parse_str(&yaml).expect("bench config is valid");
    let mut clusters = HashMap::new();
    for c in &config.clusters {
        clusters.insert(c.name.clone(), Cluster::new(c));
    }
    let hcm: &model::HttpConnectionManager =
        config.listeners[0].filter_chains[0].http.as_ref().unwrap();
    let rc = hcm.route_config.as_ref().expect("inline routes");
    let clusters = Clusters {
        map: &clusters,
        allow_missing: false,
    };
    RouteTable::compile("bench", rc, false, &clusters).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let t = table(1000, 1000);
    let headers = HeaderMap::new();
    let mut gold = HeaderMap::new();
    gold.insert("x-tier", "gold".parse().unwrap());
    let view = |path: &'static str, host: &'static str, h: &'static HeaderMap| RequestView {
        host,
        path,
        query: None,
        headers: h,
    };
    let headers: &'static HeaderMap = Box::leak(Box::new(headers));
    let gold: &'static HeaderMap = Box::leak(Box::new(gold));
    let mut g = c.benchmark_group("route_match_1000_routes");
    g.bench_function("first_route", |b| {
        let v = view("/svc0/items", "anything", headers);
        b.iter(|| black_box(t.route(black_box(&v)).is_some()))
    });
    g.bench_function("last_route", |b| {
        let v = view("/svc998/items", "anything", headers);
        b.iter(|| black_box(t.route(black_box(&v)).is_some()))
    });
    g.bench_function("header_match_route_999", |b| {
        let v = view("/svc999/items", "anything", gold);
        b.iter(|| black_box(t.route(black_box(&v)).is_some()))
    });
    g.bench_function("miss", |b| {
        let v = view("/nothing/here", "anything", headers);
        b.iter(|| black_box(t.route(black_box(&v)).is_none()))
    });
    g.finish();
    let mut g = c.benchmark_group("virtual_host_1000_domains");
    g.bench_function("exact", |b| {
        b.iter(|| black_box(t.virtual_host(black_box("host777.example.com")).is_some()))
    });
    g.bench_function("exact_mixed_case_with_port", |b| {
        b.iter(|| {
            black_box(
                t.virtual_host(black_box("Host777.Example.com:8080"))
                    .is_some(),
            )
        })
    });
    g.bench_function("default", |b| {
        b.iter(|| black_box(t.virtual_host(black_box("other.org")).is_some()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
