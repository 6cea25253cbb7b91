//! Metrics: names, help texts, and the Prometheus recorder.
//!
//! Handles (`Counter`, `Gauge`, `Histogram`) are created when configuration
//! is compiled, never per request: recording is then an atomic add.

pub mod flags;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Upstream request duration buckets, in milliseconds (Istio's buckets).
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Installs the process-wide Prometheus recorder (once) and returns the
/// handle used by the admin server to render `/stats/prometheus`.
pub fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(DURATION_BUCKETS_MS)
                .ok()?
                .build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok()?;
            describe();
            Some(handle)
        })
        .clone()
}

fn describe() {
    crate::cluster::breaker::describe_metrics();
    crate::cluster::outlier::describe_metrics();
    describe_counter!(
        "legate_cluster_upstream_rq_total",
        "Upstream requests completed with response headers, by cluster and response code class."
    );
    describe_histogram!(
        "legate_cluster_upstream_rq_time_milliseconds",
        "Time from sending the upstream request to receiving its response headers, in milliseconds."
    );
    describe_counter!(
        "legate_cluster_upstream_cx_total",
        "Upstream connections opened."
    );
    describe_gauge!(
        "legate_cluster_upstream_cx_active",
        "Upstream connections currently open."
    );
    describe_counter!(
        "legate_cluster_upstream_cx_connect_fail_total",
        "Upstream connection attempts that failed or timed out."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_timeout_total",
        "Upstream requests that hit the route timeout (504)."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_reset_total",
        "Upstream requests whose connection failed after it was established (503)."
    );
    describe_counter!(
        "legate_cluster_upstream_cx_none_healthy_total",
        "Requests that found no endpoint to send to (503)."
    );
    describe_gauge!(
        "legate_cluster_membership_total",
        "Endpoints currently in the cluster."
    );
    describe_gauge!(
        "legate_cluster_membership_healthy",
        "Healthy endpoints (by EDS status, health checks and outlier detection) in the priority serving the cluster."
    );
    describe_counter!(
        "legate_cluster_lb_healthy_panic_total",
        "Endpoint picks made in panic mode (under the healthy panic threshold, across all endpoints)."
    );
    describe_counter!(
        "legate_listener_downstream_cx_total",
        "Downstream connections accepted."
    );
    describe_gauge!(
        "legate_listener_downstream_cx_active",
        "Downstream connections currently open."
    );
    describe_counter!(
        "legate_http_downstream_rq_total",
        "Downstream HTTP requests answered, by listener and response code class."
    );
    describe_counter!(
        "legate_http_no_route_total",
        "Downstream requests that matched no route (404)."
    );
    describe_counter!(
        "legate_http_no_cluster_total",
        "Downstream requests routed to a cluster the configuration does not have (503)."
    );
    describe_counter!(
        "legate_http_fault_delays_injected_total",
        "Requests delayed by fault injection (response flag DI)."
    );
    describe_counter!(
        "legate_http_fault_aborts_injected_total",
        "Requests aborted by fault injection (response flag FI)."
    );
    describe_counter!(
        "legate_http_local_rate_limit_total",
        "Requests the local rate limit was worked out for, by result: ok (a token was taken) or rate_limited (none left; response flag RL)."
    );
    describe_counter!(
        "legate_listener_original_dst_total",
        "Connections a use_original_dst listener intercepted, by where they went: listener (the listener at their original destination), filter_chain (one of its own), passthrough (to the original destination as is) or blocked (outbound_traffic_policy registry_only)."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_retry_total",
        "Retries sent to the cluster."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_retry_success_total",
        "Requests that succeeded on a retry."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_retry_overflow_total",
        "Retries not sent because the retry budget was spent."
    );
    describe_counter!(
        "legate_cluster_upstream_rq_retry_limit_exceeded_total",
        "Requests that failed after their last allowed retry (response flag URX)."
    );
    describe_counter!(
        "legate_http_response_flags_total",
        "Downstream requests answered with an Envoy response flag (UO, URX, UF, UH, UT, UC, UR, NR, NC, DI, FI, RL, UPE, DPE), by listener and flag."
    );
    describe_counter!(
        "legate_tcp_sent_bytes_total",
        "Bytes sent to downstream by TCP proxies, by cluster."
    );
    describe_counter!(
        "legate_tcp_received_bytes_total",
        "Bytes received from downstream by TCP proxies, by cluster."
    );
    crate::cluster::health::describe_metrics();
}

/// Index 0..=4 for response classes 1xx..5xx.
#[inline]
pub fn class_index(status: u16) -> usize {
    ((status / 100).clamp(1, 5) - 1) as usize
}

const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Per-cluster statistics handles.
pub struct ClusterStats {
    pub rq: [Counter; 5],
    pub rq_time: Histogram,
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub cx_connect_fail: Counter,
    pub rq_timeout: Counter,
    pub rq_reset: Counter,
    pub none_healthy: Counter,
    pub membership: Gauge,
    /// Endpoints healthy in the priority serving; picks made in panic mode.
    pub healthy: Gauge,
    pub lb_healthy_panic: Counter,
    pub tcp_sent: Counter,
    pub tcp_received: Counter,
    /// Retries sent; requests that succeeded on a retry; retries the
    /// budget refused (overflow); requests that ran out of retries (URX).
    pub rq_retry: Counter,
    pub rq_retry_success: Counter,
    pub rq_retry_overflow: Counter,
    pub rq_retry_limit_exceeded: Counter,
}

impl ClusterStats {
    pub fn new(cluster: &str) -> Self {
        let c = cluster.to_string();
        ClusterStats {
            rq: CLASSES.map(|class| {
                counter!("legate_cluster_upstream_rq_total", "cluster" => c.clone(), "response_code_class" => class)
            }),
            rq_time: histogram!("legate_cluster_upstream_rq_time_milliseconds", "cluster" => c.clone()),
            cx_total: counter!("legate_cluster_upstream_cx_total", "cluster" => c.clone()),
            cx_active: gauge!("legate_cluster_upstream_cx_active", "cluster" => c.clone()),
            cx_connect_fail: counter!("legate_cluster_upstream_cx_connect_fail_total", "cluster" => c.clone()),
            rq_timeout: counter!("legate_cluster_upstream_rq_timeout_total", "cluster" => c.clone()),
            rq_retry: counter!("legate_cluster_upstream_rq_retry_total", "cluster" => c.clone()),
            rq_retry_success: counter!("legate_cluster_upstream_rq_retry_success_total", "cluster" => c.clone()),
            rq_retry_overflow: counter!("legate_cluster_upstream_rq_retry_overflow_total", "cluster" => c.clone()),
            rq_retry_limit_exceeded: counter!("legate_cluster_upstream_rq_retry_limit_exceeded_total", "cluster" => c.clone()),
            rq_reset: counter!("legate_cluster_upstream_rq_reset_total", "cluster" => c.clone()),
            none_healthy: counter!("legate_cluster_upstream_cx_none_healthy_total", "cluster" => c.clone()),
            membership: gauge!("legate_cluster_membership_total", "cluster" => c.clone()),
            healthy: gauge!("legate_cluster_membership_healthy", "cluster" => c.clone()),
            lb_healthy_panic: counter!("legate_cluster_lb_healthy_panic_total", "cluster" => c.clone()),
            tcp_sent: counter!("legate_tcp_sent_bytes_total", "cluster" => c.clone()),
            tcp_received: counter!("legate_tcp_received_bytes_total", "cluster" => c),
        }
    }
}

impl ListenerStats {
    /// Counts a response's flags.
    /// Counts an intercepted connection by where it went: `result` is
    /// `listener::Routed as usize`.
    pub fn count_original_dst(&self, result: usize) {
        const RESULTS: [&str; 4] = ["listener", "filter_chain", "passthrough", "blocked"];
        if let (Some(slot), Some(name)) = (self.original_dst.get(result), RESULTS.get(result)) {
            slot.get_or_init(|| {
                counter!("legate_listener_original_dst_total", "listener" => self.name.clone(), "result" => *name)
            })
            .increment(1);
        }
    }

    pub fn count_flags(&self, f: flags::ResponseFlags) {
        for (i, name) in f.indexed() {
            self.flags[i]
                .get_or_init(|| {
                    counter!("legate_http_response_flags_total", "listener" => self.name.clone(), "flag" => name)
                })
                .increment(1);
        }
    }
}

/// Per-listener statistics handles.
pub struct ListenerStats {
    pub name: String,
    /// Responses by Envoy response flag, made on first use (most
    /// listeners never see most flags, and a counter is shown once made).
    pub flags: [OnceLock<Counter>; flags::ResponseFlags::COUNT],
    pub cx_total: Counter,
    pub cx_active: Gauge,
    pub rq: [Counter; 5],
    pub no_route: Counter,
    /// Requests routed to a cluster that does not exist (Envoy's NC).
    pub no_cluster: Counter,
    /// Fault injection: delays (DI) and aborts (FI).
    pub fault_delays: Counter,
    pub fault_aborts: Counter,
    /// Local rate limit: requests that found a token, and those that did
    /// not (RL; refused, or let through when not enforced).
    pub rate_limit_ok: Counter,
    pub rate_limited: Counter,
    /// Intercepted connections of a `use_original_dst` listener, by where
    /// they went (see `listener::Routed`); made on first use, so other
    /// listeners show none.
    pub original_dst: [OnceLock<Counter>; 4],
}

impl ListenerStats {
    pub fn new(listener: &str) -> Self {
        let l = listener.to_string();
        ListenerStats {
            name: l.clone(),
            flags: Default::default(),
            cx_total: counter!("legate_listener_downstream_cx_total", "listener" => l.clone()),
            cx_active: gauge!("legate_listener_downstream_cx_active", "listener" => l.clone()),
            rq: CLASSES.map(|class| {
                counter!("legate_http_downstream_rq_total", "listener" => l.clone(), "response_code_class" => class)
            }),
            no_route: counter!("legate_http_no_route_total", "listener" => l.clone()),
            no_cluster: counter!("legate_http_no_cluster_total", "listener" => l.clone()),
            fault_delays: counter!("legate_http_fault_delays_injected_total", "listener" => l.clone()),
            fault_aborts: counter!("legate_http_fault_aborts_injected_total", "listener" => l.clone()),
            rate_limit_ok: counter!("legate_http_local_rate_limit_total", "listener" => l.clone(), "result" => "ok"),
            rate_limited: counter!("legate_http_local_rate_limit_total", "listener" => l.clone(), "result" => "rate_limited"),
            original_dst: Default::default(),
        }
    }
}
