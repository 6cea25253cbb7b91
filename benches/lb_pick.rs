//! Load-balancer picks over 100 endpoints, per policy, equal and unequal
//! weights.

use criterion::{Criterion, criterion_group, criterion_main};
use legate::cluster::Cluster;
use legate_xds::model::{self, LbPolicy};
use std::hint::black_box;

fn cluster(policy: LbPolicy, weighted: bool) -> std::sync::Arc<Cluster> {
    let m = model::Cluster {
        name: format!("{policy:?}"),
        lb_policy: policy,
        endpoints: (0..100)
            .map(|i| model::Endpoint {
                address: format!("127.0.{}.{}:8080", i / 250, i % 250 + 1),
                weight: if weighted { 1 + (i % 5) as u32 } else { 1 },
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    Cluster::new(&m)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("lb_pick_100_endpoints");
    for (name, policy, weighted) in [
        ("round_robin", LbPolicy::RoundRobin, false),
        ("round_robin_weighted", LbPolicy::RoundRobin, true),
        ("least_request", LbPolicy::LeastRequest, false),
        ("least_request_weighted", LbPolicy::LeastRequest, true),
        ("random", LbPolicy::Random, false),
        ("random_weighted", LbPolicy::Random, true),
        ("ring_hash", LbPolicy::RingHash, false),
    ] {
        let cl = cluster(policy, weighted);
        let mut key = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                key = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
                black_box(cl.pick(Some(key)).is_some())
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
