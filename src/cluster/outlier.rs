//! Outlier detection (Envoy's passive health checking): endpoints that
//! keep failing leave load balancing for a while.
//!
//! Each response (or failure) is reported to its endpoint's counters: a
//! few atomic operations. When a streak reaches its threshold (5xx,
//! gateway failures, local-origin failures) the endpoint is ejected at
//! once, unless that would take more than `max_ejection_percent` of the
//! cluster out (one endpoint may always be with `always_eject_one_host`). A task wakes every `interval`: it returns
//! endpoints whose ejection has run out (`base_ejection_time` × times
//! ejected, at most `max_ejection_time`; each `base_ejection_time` back in
//! service takes one off the count), works out success rates and failure
//! percentages over the interval and ejects the outliers.

use super::{Cluster, Endpoint, flag};
use legate_xds::model;
use metrics::{Counter, Gauge, counter, describe_counter, describe_gauge, gauge};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Why an endpoint was ejected (the metric's `type` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Consecutive5xx = 0,
    ConsecutiveGatewayFailure = 1,
    ConsecutiveLocalOriginFailure = 2,
    SuccessRate = 3,
    LocalOriginSuccessRate = 4,
    FailurePercentage = 5,
    LocalOriginFailurePercentage = 6,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Consecutive5xx,
        Kind::ConsecutiveGatewayFailure,
        Kind::ConsecutiveLocalOriginFailure,
        Kind::SuccessRate,
        Kind::LocalOriginSuccessRate,
        Kind::FailurePercentage,
        Kind::LocalOriginFailurePercentage,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Consecutive5xx => "consecutive_5xx",
            Kind::ConsecutiveGatewayFailure => "consecutive_gateway_failure",
            Kind::ConsecutiveLocalOriginFailure => "consecutive_local_origin_failure",
            Kind::SuccessRate => "success_rate",
            Kind::LocalOriginSuccessRate => "local_origin_success_rate",
            Kind::FailurePercentage => "failure_percentage",
            Kind::LocalOriginFailurePercentage => "local_origin_failure_percentage",
        }
    }
}

/// What one request to an endpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Status(u16),
    /// The connection failed, was reset or timed out before an answer
    /// (Legate's side of the exchange: "local origin").
    LocalFailure,
    /// The route or per-try timeout passed before an answer.
    Timeout,
}

/// One endpoint's counters.
#[derive(Default)]
pub struct EndpointState {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    /// This interval's requests and failures, answered (external) and
    /// local-origin.
    total: AtomicU32,
    failed: AtomicU32,
    local_total: AtomicU32,
    local_failed: AtomicU32,
    times_ejected: AtomicU32,
    /// Ejected: when the ejection ends; otherwise when the ejection
    /// multiplier last changed (milliseconds since the detector started).
    ejected_until_ms: AtomicU64,
}

fn bump(c: &AtomicU32) -> u32 {
    c.fetch_add(1, Ordering::AcqRel) + 1
}

/// Clears a streak; skips the write when there is none (the common case,
/// so healthy traffic does not bounce the cache line between cores).
fn clear(c: &AtomicU32) {
    if c.load(Ordering::Relaxed) != 0 {
        c.store(0, Ordering::Relaxed);
    }
}

pub struct Detector {
    cfg: model::OutlierDetection,
    epoch: Instant,
    /// Serialises ejection decisions (rare; never held across `.await`).
    decide: Mutex<()>,
    enforced: [Counter; 7],
    detected: [Counter; 7],
    overflow: Counter,
    active: Gauge,
}

impl Detector {
    pub fn new(cluster: &str, cfg: &model::OutlierDetection) -> Arc<Detector> {
        let labels = |k: Kind| {
            [
                ("cluster", cluster.to_string()),
                ("type", k.as_str().to_string()),
            ]
        };
        Arc::new(Detector {
            cfg: cfg.clone(),
            epoch: Instant::now(),
            decide: Mutex::new(()),
            enforced: Kind::ALL.map(|k| {
                counter!(
                    "legate_cluster_outlier_detection_ejections_enforced_total",
                    &labels(k)
                )
            }),
            detected: Kind::ALL.map(|k| {
                counter!(
                    "legate_cluster_outlier_detection_ejections_detected_total",
                    &labels(k)
                )
            }),
            overflow: counter!("legate_cluster_outlier_detection_ejections_overflow_total", "cluster" => cluster.to_string()),
            active: gauge!("legate_cluster_outlier_detection_ejections_active", "cluster" => cluster.to_string()),
        })
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn count_active(&self, cluster: &Cluster) {
        let n = cluster
            .endpoints()
            .all
            .iter()
            .filter(|e| e.flags() & flag::FAILED_OUTLIER_CHECK != 0)
            .count();
        self.active.set(n as f64);
    }

    /// Records one request's outcome on `ep`; may eject it.
    pub fn report(&self, cluster: &Cluster, ep: &Endpoint, outcome: Outcome) {
        let s = &ep.outlier;
        let split = self.cfg.split_external_local_origin_errors;
        let status = match outcome {
            Outcome::Status(code) => {
                if split {
                    bump(&s.local_total);
                    clear(&s.consecutive_local);
                }
                code
            }
            Outcome::LocalFailure | Outcome::Timeout if split => {
                bump(&s.local_total);
                bump(&s.local_failed);
                if bump(&s.consecutive_local) == self.cfg.consecutive_local_origin_failure {
                    self.detected_streak(
                        cluster,
                        ep,
                        Kind::ConsecutiveLocalOriginFailure,
                        self.cfg.enforcing_consecutive_local_origin_failure,
                    );
                }
                return;
            }
            // Not split: a failed connection is a 503, a timeout a 504.
            Outcome::LocalFailure => 503,
            Outcome::Timeout => 504,
        };
        bump(&s.total);
        if !(500..600).contains(&status) {
            clear(&s.consecutive_5xx);
            clear(&s.consecutive_gateway);
            return;
        }
        bump(&s.failed);
        if matches!(status, 502..=504) {
            if bump(&s.consecutive_gateway) == self.cfg.consecutive_gateway_failure {
                self.detected_streak(
                    cluster,
                    ep,
                    Kind::ConsecutiveGatewayFailure,
                    self.cfg.enforcing_consecutive_gateway_failure,
                );
            }
        } else {
            clear(&s.consecutive_gateway);
        }
        if bump(&s.consecutive_5xx) == self.cfg.consecutive_5xx {
            self.detected_streak(
                cluster,
                ep,
                Kind::Consecutive5xx,
                self.cfg.enforcing_consecutive_5xx,
            );
        }
    }

    #[cold]
    fn detected_streak(&self, cluster: &Cluster, ep: &Endpoint, kind: Kind, enforcing: u32) {
        self.eject(cluster, ep, kind, enforcing);
    }

    /// Ejects `ep` for `kind` when the enforcing percentage draws it and
    /// the cluster's ejection limit allows. Returns whether it did.
    fn eject(&self, cluster: &Cluster, ep: &Endpoint, kind: Kind, enforcing: u32) -> bool {
        let _decide = self.decide.lock().unwrap_or_else(|p| p.into_inner());
        if ep.flags() & flag::FAILED_OUTLIER_CHECK != 0 {
            return false;
        }
        self.detected[kind as usize].increment(1);
        if fastrand::u32(0..100) >= enforcing {
            return false;
        }
        let set = cluster.endpoints();
        let total = set.all.len().max(1);
        let ejected = set
            .all
            .iter()
            .filter(|e| e.flags() & flag::FAILED_OUTLIER_CHECK != 0)
            .count();
        let percent = 100.0 * (ejected + 1) as f64 / total as f64;
        let one_allowed = self.cfg.always_eject_one_host && ejected == 0;
        if !one_allowed && percent > f64::from(self.cfg.max_ejection_percent) {
            self.overflow.increment(1);
            tracing::debug!(cluster = %cluster.name, endpoint = %ep.addr, reason = kind.as_str(), "outlier detection: not ejecting, max_ejection_percent reached");
            return false;
        }
        let s = &ep.outlier;
        let times = bump(&s.times_ejected);
        let base = self.cfg.base_ejection_time.get();
        let max = self.cfg.max_ejection_time.get().max(base);
        let mut time = base.saturating_mul(times).min(max);
        let jitter = self.cfg.max_ejection_time_jitter.get();
        if !jitter.is_zero() {
            time += Duration::from_millis(fastrand::u64(0..=jitter.as_millis() as u64));
        }
        s.ejected_until_ms
            .store(self.now_ms() + time.as_millis() as u64, Ordering::Release);
        for c in [
            &s.consecutive_5xx,
            &s.consecutive_gateway,
            &s.consecutive_local,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        drop(set);
        cluster.set_flags(ep, flag::FAILED_OUTLIER_CHECK, 0);
        self.enforced[kind as usize].increment(1);
        self.count_active(cluster);
        tracing::info!(cluster = %cluster.name, endpoint = %ep.addr, reason = kind.as_str(), ejection = ?time, times, "outlier detection: endpoint ejected");
        true
    }

    /// One interval's work: returns endpoints whose ejection ran out, then
    /// ejects by success rate and failure percentage, and starts the next
    /// interval's counts.
    pub fn on_interval(&self, cluster: &Cluster) {
        let set = cluster.endpoints();
        let all: Vec<Arc<Endpoint>> = set.all.clone();
        drop(set);
        let now = self.now_ms();
        let base_ms = self.cfg.base_ejection_time.get().as_millis() as u64;
        for ep in &all {
            let s = &ep.outlier;
            if ep.flags() & flag::FAILED_OUTLIER_CHECK != 0 {
                if now >= s.ejected_until_ms.load(Ordering::Acquire) {
                    for c in [
                        &s.consecutive_5xx,
                        &s.consecutive_gateway,
                        &s.consecutive_local,
                    ] {
                        c.store(0, Ordering::Relaxed);
                    }
                    s.ejected_until_ms.store(now, Ordering::Release);
                    cluster.set_flags(ep, 0, flag::FAILED_OUTLIER_CHECK);
                    tracing::info!(cluster = %cluster.name, endpoint = %ep.addr, "outlier detection: endpoint returned");
                }
            } else if s.times_ejected.load(Ordering::Relaxed) > 0
                && now >= s.ejected_until_ms.load(Ordering::Acquire) + base_ms
            {
                // Each base ejection time in service brings the ejection
                // multiplier down by one.
                s.times_ejected.fetch_sub(1, Ordering::AcqRel);
                s.ejected_until_ms.store(now, Ordering::Release);
            }
        }
        // Counted, not tracked: an ejected endpoint may have left the
        // cluster since.
        self.count_active(cluster);
        // This interval's counts, taken (and reset) for every endpoint.
        let counts: Vec<(u32, u32, u32, u32)> = all
            .iter()
            .map(|ep| {
                let s = &ep.outlier;
                (
                    s.total.swap(0, Ordering::AcqRel),
                    s.failed.swap(0, Ordering::AcqRel),
                    s.local_total.swap(0, Ordering::AcqRel),
                    s.local_failed.swap(0, Ordering::AcqRel),
                )
            })
            .collect();
        let external: Vec<(u32, u32)> = counts.iter().map(|c| (c.0, c.1)).collect();
        self.by_rates(cluster, &all, &external, false);
        if self.cfg.split_external_local_origin_errors {
            let local: Vec<(u32, u32)> = counts.iter().map(|c| (c.2, c.3)).collect();
            self.by_rates(cluster, &all, &local, true);
        }
    }

    /// Success-rate and failure-percentage ejections over one interval's
    /// (requests, failures) per endpoint.
    fn by_rates(
        &self,
        cluster: &Cluster,
        all: &[Arc<Endpoint>],
        counts: &[(u32, u32)],
        local: bool,
    ) {
        let c = &self.cfg;
        let (sr_kind, sr_enforcing, fp_kind, fp_enforcing) = if local {
            (
                Kind::LocalOriginSuccessRate,
                c.enforcing_local_origin_success_rate,
                Kind::LocalOriginFailurePercentage,
                c.enforcing_failure_percentage_local_origin,
            )
        } else {
            (
                Kind::SuccessRate,
                c.enforcing_success_rate,
                Kind::FailurePercentage,
                c.enforcing_failure_percentage,
            )
        };
        let rate = |(total, failed): (u32, u32)| {
            100.0 * f64::from(total - failed.min(total)) / f64::from(total)
        };
        // Success rate: outliers below mean − stdev × factor.
        let sampled: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(i, (total, _))| {
                *total >= c.success_rate_request_volume
                    && all[*i].flags() & flag::FAILED_OUTLIER_CHECK == 0
            })
            .map(|(i, n)| (i, rate(*n)))
            .collect();
        if sampled.len() >= c.success_rate_minimum_hosts as usize && !sampled.is_empty() {
            let n = sampled.len() as f64;
            let mean = sampled.iter().map(|(_, r)| r).sum::<f64>() / n;
            let var = sampled.iter().map(|(_, r)| (r - mean).powi(2)).sum::<f64>() / n;
            let threshold = mean - var.sqrt() * f64::from(c.success_rate_stdev_factor) / 1000.0;
            for (i, r) in &sampled {
                if *r < threshold {
                    tracing::debug!(cluster = %cluster.name, endpoint = %all[*i].addr, rate = r, mean, threshold, "outlier detection: success rate outlier");
                    self.eject(cluster, &all[*i], sr_kind, sr_enforcing);
                }
            }
        }
        // Failure percentage: at or above the threshold.
        let sampled: Vec<(usize, f64)> = counts
            .iter()
            .enumerate()
            .filter(|(_, (total, _))| *total >= c.failure_percentage_request_volume && *total > 0)
            .map(|(i, n)| (i, 100.0 - rate(*n)))
            .collect();
        if sampled.len() >= c.failure_percentage_minimum_hosts as usize {
            for (i, failed) in &sampled {
                if *failed >= f64::from(c.failure_percentage_threshold) {
                    self.eject(cluster, &all[*i], fp_kind, fp_enforcing);
                }
            }
        }
    }
}

/// Runs the detector's interval until the cluster is dropped.
pub async fn run(weak: Weak<Cluster>, detector: Arc<Detector>) {
    let every = detector.cfg.interval.get();
    let mut tick = tokio::time::interval_at(Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(cluster) = weak.upgrade() else {
            return;
        };
        detector.on_interval(&cluster);
    }
}

pub fn describe_metrics() {
    describe_counter!(
        "legate_cluster_outlier_detection_ejections_enforced_total",
        "Endpoints ejected by outlier detection, by cluster and detection type."
    );
    describe_counter!(
        "legate_cluster_outlier_detection_ejections_detected_total",
        "Endpoints found to be outliers (ejected or not, by the enforcing percentage), by cluster and detection type."
    );
    describe_counter!(
        "legate_cluster_outlier_detection_ejections_overflow_total",
        "Ejections not made because max_ejection_percent of the cluster was ejected already."
    );
    describe_gauge!(
        "legate_cluster_outlier_detection_ejections_active",
        "Endpoints currently ejected by outlier detection."
    );
}
