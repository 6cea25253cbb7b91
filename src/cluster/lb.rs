//! Load balancers: round robin (weighted), least request (power of two
//! choices), random (weighted) and ring hash. Tables are built when the
//! endpoint set changes; a pick reads them without locking or allocating.

use super::{Endpoint, EndpointSet};
use legate_xds::model::LbPolicy;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Default)]
pub struct LbTables {
    /// Weighted round-robin schedule (indices); empty when weights are equal.
    schedule: Vec<u32>,
    /// Cumulative weights for weighted random; empty when weights are equal.
    cumulative: Vec<u64>,
    /// Sorted (hash, endpoint index) ring for ring hash.
    ring: Vec<(u64, u32)>,
}

impl LbTables {
    pub fn build(policy: LbPolicy, endpoints: &[Arc<Endpoint>], ring_size: u32) -> Self {
        let mut t = LbTables::default();
        let uniform = endpoints.windows(2).all(|w| w[0].weight == w[1].weight);
        match policy {
            LbPolicy::RoundRobin if !uniform => t.schedule = smooth_schedule(endpoints),
            LbPolicy::Random | LbPolicy::LeastRequest if !uniform => {
                let mut acc = 0u64;
                t.cumulative = endpoints
                    .iter()
                    .map(|e| {
                        acc += u64::from(e.weight);
                        acc
                    })
                    .collect();
            }
            LbPolicy::RingHash => t.ring = build_ring(endpoints, ring_size),
            _ => {}
        }
        t
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Nginx's smooth weighted round robin, unrolled into one cycle of the
/// schedule (weights reduced by their gcd, cycle capped at 65,536 slots).
fn smooth_schedule(endpoints: &[Arc<Endpoint>]) -> Vec<u32> {
    let g = endpoints.iter().fold(0, |g, e| gcd(g, e.weight)).max(1);
    let mut weights: Vec<i64> = endpoints.iter().map(|e| i64::from(e.weight / g)).collect();
    let mut total: i64 = weights.iter().sum();
    if total > 65_536 {
        let scale = total as f64 / 65_536.0;
        for w in &mut weights {
            *w = ((*w as f64 / scale).round() as i64).max(1);
        }
        total = weights.iter().sum();
    }
    let mut current = vec![0i64; weights.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for i in 0..weights.len() {
            current[i] += weights[i];
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}

/// 64-bit FNV-1a followed by a murmur3 finaliser: stable across processes
/// and releases, so every proxy maps a key to the same endpoint.
pub fn hash_bytes(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

fn build_ring(endpoints: &[Arc<Endpoint>], ring_size: u32) -> Vec<(u64, u32)> {
    if endpoints.is_empty() {
        return Vec::new();
    }
    let total: u64 = endpoints.iter().map(|e| u64::from(e.weight)).sum();
    let size = u64::from(ring_size).max(endpoints.len() as u64);
    let mut ring = Vec::with_capacity(size as usize + endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        let replicas = (size * u64::from(e.weight) / total).max(1);
        let key = e.addr.to_string();
        for r in 0..replicas {
            let h = hash_bytes(format!("{key}_{r}").as_bytes());
            ring.push((h, i as u32));
        }
    }
    ring.sort_unstable();
    ring
}

/// Picks an endpoint from `set` by `policy`.
pub fn pick<'a>(
    policy: LbPolicy,
    set: &'a EndpointSet,
    rr: &AtomicUsize,
    hash: Option<u64>,
) -> Option<&'a Arc<Endpoint>> {
    let eps = &set.endpoints;
    let n = eps.len();
    if n <= 1 {
        return eps.first();
    }
    let t = &set.lb;
    let idx = match policy {
        LbPolicy::RoundRobin => {
            let i = rr.fetch_add(1, Ordering::Relaxed);
            if t.schedule.is_empty() {
                i % n
            } else {
                t.schedule[i % t.schedule.len()] as usize
            }
        }
        LbPolicy::Random => random_index(t, n),
        LbPolicy::LeastRequest => {
            // Power of two choices. Equal weights: two distinct endpoints.
            // Unequal weights: both drawn by weight (possibly the same one),
            // so weight counts once: an idle cluster splits by weight, a
            // busy one leans to the endpoint with fewer requests in flight.
            let a = random_index(t, n);
            let mut b = random_index(t, n);
            if t.cumulative.is_empty() && b == a {
                b = (a + 1 + fastrand::usize(..n - 1)) % n;
            }
            let active = |i: usize| eps[i].active.load(Ordering::Relaxed);
            if active(b) < active(a) { b } else { a }
        }
        LbPolicy::RingHash => {
            let h = hash.unwrap_or_else(|| fastrand::u64(..));
            let ring = &t.ring;
            if ring.is_empty() {
                return eps.first();
            }
            let pos = ring.partition_point(|&(x, _)| x < h);
            ring[if pos == ring.len() { 0 } else { pos }].1 as usize
        }
    };
    eps.get(idx)
}

fn random_index(t: &LbTables, n: usize) -> usize {
    if t.cumulative.is_empty() {
        fastrand::usize(..n)
    } else {
        let total = *t.cumulative.last().unwrap_or(&1);
        let r = fastrand::u64(..total);
        t.cumulative.partition_point(|&c| c <= r).min(n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;
    use legate_xds::model;

    fn cluster(policy: LbPolicy, weights: &[u32]) -> Arc<Cluster> {
        Cluster::new(&model::Cluster {
            name: "t".into(),
            lb_policy: policy,
            endpoints: weights
                .iter()
                .enumerate()
                .map(|(i, w)| model::Endpoint {
                    address: format!("127.0.0.{}:80", i + 1),
                    weight: *w,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    fn share(c: &Cluster, picks: usize) -> Vec<f64> {
        let n = c.endpoints().endpoints.len();
        let mut counts = vec![0usize; n];
        for _ in 0..picks {
            let e = c.pick(None).unwrap();
            let i = c
                .endpoints()
                .endpoints
                .iter()
                .position(|x| Arc::ptr_eq(x, &e))
                .unwrap();
            counts[i] += 1;
        }
        counts.iter().map(|&k| k as f64 / picks as f64).collect()
    }

    #[test]
    fn weighted_least_request_splits_an_idle_cluster_by_weight() {
        let c = cluster(LbPolicy::LeastRequest, &[1, 9]);
        let s = share(&c, 20_000);
        assert!((s[0] - 0.1).abs() < 0.02, "{s:?}");
    }

    #[test]
    fn weighted_least_request_avoids_a_busy_endpoint() {
        let c = cluster(LbPolicy::LeastRequest, &[1, 1, 2]);
        let busy = c.endpoints().endpoints[2].clone();
        busy.active.store(50, Ordering::Relaxed);
        let s = share(&c, 10_000);
        // Drawn with weight 2 of 4, but only kept when drawn twice: 1/4.
        assert!(s[2] < 0.3, "{s:?}");
    }

    #[test]
    fn smooth_weighted_round_robin_is_exact_and_interleaved() {
        let c = cluster(LbPolicy::RoundRobin, &[5, 1, 1]);
        let seq: Vec<usize> = (0..7)
            .map(|_| {
                let e = c.pick(None).unwrap();
                c.endpoints()
                    .endpoints
                    .iter()
                    .position(|x| Arc::ptr_eq(x, &e))
                    .unwrap()
            })
            .collect();
        // nginx's smooth weighted round robin for 5:1:1.
        assert_eq!(seq, [0, 0, 1, 0, 2, 0, 0]);
    }
}
