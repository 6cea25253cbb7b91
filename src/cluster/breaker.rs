//! Circuit breakers: Envoy's per-cluster, per-priority limits on open
//! connections, pending requests, requests and retries in flight.
//!
//! Each limit is an atomic counter checked when a resource is taken (a
//! compare and an add) and released by a guard; nothing waits here. A
//! request over a limit fails at once (503, `x-envoy-overloaded`, flag
//! `UO`); a retry over its limit is not made. The remaining capacity is
//! published to gauges when metrics are rendered, not per request.

use legate_xds::model::{self, RoutingPriority};
use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::sync::Notify;

/// A limited resource, as the metrics label it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Connections = 0,
    Pending = 1,
    Requests = 2,
    Retries = 3,
}

impl Resource {
    const ALL: [Resource; 4] = [
        Resource::Connections,
        Resource::Pending,
        Resource::Requests,
        Resource::Retries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Connections => "connections",
            Resource::Pending => "pending_requests",
            Resource::Requests => "requests",
            Resource::Retries => "retries",
        }
    }
}

enum RetryLimit {
    Fixed(u32),
    /// Retries in flight may be `percent` of requests and pending requests
    /// in flight, and at least `min`.
    Budget {
        percent: f64,
        min: u32,
    },
}

struct Level {
    max_connections: u32,
    max_pending: u32,
    max_requests: u32,
    retry_limit: RetryLimit,
    connections: AtomicU32,
    pending: AtomicU32,
    requests: AtomicU32,
    retries: AtomicU32,
    overflow: [Counter; 4],
    remaining: [Gauge; 4],
}

/// A cluster's circuit breakers, shared by its endpoints.
pub struct Breakers {
    levels: [Level; 2],
    /// Requests waiting for the connection limit, and the signal that a
    /// connection closed somewhere in the cluster.
    cx_waiters: AtomicU32,
    cx_freed: Notify,
}

/// Takes one unit of `count` if that stays within `max`.
fn take(count: &AtomicU32, max: u32) -> bool {
    count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

impl Breakers {
    pub fn new(cluster: &str, m: &model::CircuitBreakers) -> Arc<Breakers> {
        let level = |p: RoutingPriority| {
            let t = m.get(p);
            let retry_limit = match (t.max_retries, &t.retry_budget) {
                (Some(n), _) => RetryLimit::Fixed(n),
                (None, Some(b)) => RetryLimit::Budget {
                    percent: b.budget_percent,
                    min: b.min_retry_concurrency,
                },
                (None, None) => {
                    let b = model::RetryBudget::default();
                    RetryLimit::Budget {
                        percent: b.budget_percent,
                        min: b.min_retry_concurrency,
                    }
                }
            };
            let label = |r: Resource| {
                [
                    ("cluster", cluster.to_string()),
                    ("priority", p.as_str().to_string()),
                    ("resource", r.as_str().to_string()),
                ]
            };
            Level {
                max_connections: t.max_connections,
                max_pending: t.max_pending_requests,
                max_requests: t.max_requests,
                retry_limit,
                connections: AtomicU32::new(0),
                pending: AtomicU32::new(0),
                requests: AtomicU32::new(0),
                retries: AtomicU32::new(0),
                overflow: Resource::ALL
                    .map(|r| counter!("legate_cluster_circuit_breakers_overflow_total", &label(r))),
                remaining: Resource::ALL
                    .map(|r| gauge!("legate_cluster_circuit_breakers_remaining", &label(r))),
            }
        };
        let b = Arc::new(Breakers {
            levels: [
                level(RoutingPriority::Default),
                level(RoutingPriority::High),
            ],
            cx_waiters: AtomicU32::new(0),
            cx_freed: Notify::new(),
        });
        b.publish();
        b
    }

    fn level(&self, p: RoutingPriority) -> &Level {
        &self.levels[p.index()]
    }

    fn overflowed(&self, p: RoutingPriority, r: Resource) {
        self.level(p).overflow[r as usize].increment(1);
    }

    /// A request slot; its holder calls [`Breakers::end_request`].
    #[inline]
    pub fn try_request(&self, p: RoutingPriority) -> bool {
        let l = self.level(p);
        let ok = take(&l.requests, l.max_requests);
        if !ok {
            self.overflowed(p, Resource::Requests);
        }
        ok
    }

    #[inline]
    pub fn end_request(&self, p: RoutingPriority) {
        self.level(p).requests.fetch_sub(1, Ordering::AcqRel);
    }

    /// A pending-request slot, held while the request waits for a
    /// connection or a stream.
    pub fn pending(&self, p: RoutingPriority) -> Option<Held<'_>> {
        let l = self.level(p);
        if take(&l.pending, l.max_pending) {
            Some(Held(&l.pending))
        } else {
            self.overflowed(p, Resource::Pending);
            None
        }
    }

    /// A connection slot for an endpoint whose open connections are
    /// `endpoint_open`, unless the cluster is at its connection limit. A
    /// pool's endpoint with no connection may always open one, as Envoy's
    /// pools may, so no request waits on a pool that cannot grow; a TCP
    /// proxy's connection is `strict`ly limited.
    pub fn try_connection(
        self: &Arc<Self>,
        p: RoutingPriority,
        endpoint_open: &Arc<AtomicU32>,
        strict: bool,
    ) -> Option<CxSlot> {
        let l = self.level(p);
        let ok = if strict || endpoint_open.load(Ordering::Acquire) > 0 {
            take(&l.connections, l.max_connections)
        } else {
            l.connections.fetch_add(1, Ordering::AcqRel);
            true
        };
        if !ok {
            self.overflowed(p, Resource::Connections);
            return None;
        }
        endpoint_open.fetch_add(1, Ordering::AcqRel);
        Some(CxSlot {
            breakers: self.clone(),
            endpoint_open: endpoint_open.clone(),
            priority: p,
        })
    }

    /// A connection slot for a connection that replaces one just lost
    /// (never refused).
    pub fn replace_connection(
        self: &Arc<Self>,
        p: RoutingPriority,
        endpoint_open: &Arc<AtomicU32>,
    ) -> CxSlot {
        self.level(p).connections.fetch_add(1, Ordering::AcqRel);
        endpoint_open.fetch_add(1, Ordering::AcqRel);
        CxSlot {
            breakers: self.clone(),
            endpoint_open: endpoint_open.clone(),
            priority: p,
        }
    }

    /// A retry slot, if the priority's retry limit has room.
    pub fn retry_slot(self: &Arc<Self>, p: RoutingPriority) -> Option<RetrySlot> {
        let held = self.retry(p)?;
        std::mem::forget(held);
        Some(RetrySlot {
            breakers: self.clone(),
            priority: p,
        })
    }

    /// A retry slot borrowing the breakers (see [`Breakers::retry_slot`]).
    pub fn retry(&self, p: RoutingPriority) -> Option<Held<'_>> {
        let l = self.level(p);
        let max = match l.retry_limit {
            RetryLimit::Fixed(n) => n,
            RetryLimit::Budget { percent, min } => {
                let active = l.requests.load(Ordering::Acquire) + l.pending.load(Ordering::Acquire);
                ((f64::from(active) * percent / 100.0) as u32).max(min)
            }
        };
        if take(&l.retries, max) {
            Some(Held(&l.retries))
        } else {
            self.overflowed(p, Resource::Retries);
            None
        }
    }

    /// Counts a request waiting for a connection to close somewhere in
    /// the cluster (so closes signal [`Breakers::freed`]) until dropped.
    pub fn watch_freed(&self) -> Held<'_> {
        self.cx_waiters.fetch_add(1, Ordering::SeqCst);
        Held(&self.cx_waiters)
    }

    /// Resolves when a connection closes, for a caller that holds
    /// [`Breakers::watch_freed`].
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.cx_freed.notified()
    }

    /// Sets the remaining-capacity gauges (called before metrics are
    /// rendered).
    pub fn publish(&self) {
        for l in &self.levels {
            let retries_max = match l.retry_limit {
                RetryLimit::Fixed(n) => n,
                RetryLimit::Budget { percent, min } => {
                    let active =
                        l.requests.load(Ordering::Relaxed) + l.pending.load(Ordering::Relaxed);
                    ((f64::from(active) * percent / 100.0) as u32).max(min)
                }
            };
            let pairs = [
                (l.max_connections, &l.connections),
                (l.max_pending, &l.pending),
                (l.max_requests, &l.requests),
                (retries_max, &l.retries),
            ];
            for (gauge, (max, used)) in l.remaining.iter().zip(pairs) {
                gauge.set(f64::from(max.saturating_sub(used.load(Ordering::Relaxed))));
            }
        }
    }
}

/// A retry's place under the retry limit, given back when dropped (owned,
/// for the retrying request's future to keep).
pub struct RetrySlot {
    breakers: Arc<Breakers>,
    priority: RoutingPriority,
}

impl Drop for RetrySlot {
    fn drop(&mut self) {
        self.breakers
            .level(self.priority)
            .retries
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// One unit of a counted resource, given back when dropped.
pub struct Held<'a>(&'a AtomicU32);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An open upstream connection's place under the connection limit, kept
/// by the connection for its life.
pub struct CxSlot {
    breakers: Arc<Breakers>,
    endpoint_open: Arc<AtomicU32>,
    priority: RoutingPriority,
}

impl Drop for CxSlot {
    fn drop(&mut self) {
        self.endpoint_open.fetch_sub(1, Ordering::AcqRel);
        let b = &self.breakers;
        b.level(self.priority)
            .connections
            .fetch_sub(1, Ordering::AcqRel);
        if b.cx_waiters.load(Ordering::SeqCst) > 0 {
            b.cx_freed.notify_waiters();
        }
    }
}

pub fn describe_metrics() {
    describe_counter!(
        "legate_cluster_circuit_breakers_overflow_total",
        "Requests failed fast (503, response flag UO), connections refused and retries not made because a circuit-breaker limit was reached, by cluster, priority and resource."
    );
    describe_gauge!(
        "legate_cluster_circuit_breakers_remaining",
        "Capacity left under each circuit-breaker limit, by cluster, priority and resource (updated when metrics are rendered)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers(t: model::Thresholds) -> Arc<Breakers> {
        Breakers::new(
            "unit",
            &model::CircuitBreakers {
                default: t,
                ..Default::default()
            },
        )
    }

    #[test]
    fn requests_stop_at_the_limit_and_come_back() {
        let b = breakers(model::Thresholds {
            max_requests: 2,
            ..Default::default()
        });
        let p = RoutingPriority::Default;
        assert!(b.try_request(p) && b.try_request(p));
        assert!(!b.try_request(p));
        // The other priority has its own limits.
        assert!(b.try_request(RoutingPriority::High));
        b.end_request(p);
        assert!(b.try_request(p));
    }

    #[test]
    fn an_endpoint_without_a_connection_may_always_open_one() {
        let b = breakers(model::Thresholds {
            max_connections: 1,
            ..Default::default()
        });
        let p = RoutingPriority::Default;
        let (a, other) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let first = b.try_connection(p, &a, false);
        assert!(first.is_some());
        assert!(b.try_connection(p, &a, false).is_none());
        // Another endpoint with no connection: allowed over the limit.
        let extra = b.try_connection(p, &other, false);
        assert!(extra.is_some());
        assert!(b.try_connection(p, &other, false).is_none());
        drop((first, extra));
        assert_eq!(a.load(Ordering::Relaxed), 0);
        assert!(b.try_connection(p, &a, false).is_some());
    }

    #[test]
    fn the_retry_budget_follows_the_requests_in_flight() {
        let b = breakers(model::Thresholds::default());
        let p = RoutingPriority::Default;
        // Idle: the floor of 3.
        let held: Vec<_> = (0..3).map(|_| b.retry(p)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(b.retry(p).is_none());
        drop(held);
        // 50 requests in flight: 20 % is 10.
        for _ in 0..50 {
            assert!(b.try_request(p));
        }
        let held: Vec<_> = (0..10).map(|_| b.retry(p)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(b.retry(p).is_none());
        // A fixed limit ignores the load.
        let fixed = breakers(model::Thresholds {
            max_retries: Some(1),
            ..Default::default()
        });
        let one = fixed.retry(p);
        assert!(one.is_some() && fixed.retry(p).is_none());
    }
}
