//! A cluster's protection against its endpoints and against overload:
//! circuit breakers and outlier detection, with Envoy's names, semantics
//! and defaults.

use crate::duration::Dur;
use serde::{Deserialize, Serialize};

/// A request's routing priority (Envoy's `RoutingPriority`): each has its
/// own circuit-breaker thresholds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingPriority {
    #[default]
    Default,
    High,
}

impl RoutingPriority {
    pub const ALL: [RoutingPriority; 2] = [RoutingPriority::Default, RoutingPriority::High];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RoutingPriority::Default => "default",
            RoutingPriority::High => "high",
        }
    }
}

/// Circuit-breaker thresholds per routing priority (Envoy's
/// `circuit_breakers.thresholds`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CircuitBreakers {
    #[serde(default, skip_serializing_if = "Thresholds::is_default")]
    pub default: Thresholds,
    #[serde(default, skip_serializing_if = "Thresholds::is_default")]
    pub high: Thresholds,
}

impl CircuitBreakers {
    pub fn is_default(&self) -> bool {
        *self == CircuitBreakers::default()
    }

    pub fn get(&self, p: RoutingPriority) -> &Thresholds {
        match p {
            RoutingPriority::Default => &self.default,
            RoutingPriority::High => &self.high,
        }
    }

    pub fn get_mut(&mut self, p: RoutingPriority) -> &mut Thresholds {
        match p {
            RoutingPriority::Default => &mut self.default,
            RoutingPriority::High => &mut self.high,
        }
    }
}

/// One priority's limits, all across the cluster's endpoints. A request
/// over a limit fails at once with 503, `x-envoy-overloaded: true` and
/// response flag `UO`; a retry over its limit is not made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Open upstream connections (an endpoint with none may always open
    /// one, as Envoy's pools do).
    #[serde(default = "default_limit")]
    pub max_connections: u32,
    /// Requests waiting for a connection or an HTTP/2 stream.
    #[serde(default = "default_limit")]
    pub max_pending_requests: u32,
    /// Requests in flight.
    #[serde(default = "default_limit")]
    pub max_requests: u32,
    /// Retries in flight, a fixed number. Unset, the retry budget applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Retries in flight as a share of the requests in flight (default
    /// 20 %, at least 3), unless `max_retries` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

fn default_limit() -> u32 {
    1024
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            max_connections: default_limit(),
            max_pending_requests: default_limit(),
            max_requests: default_limit(),
            max_retries: None,
            retry_budget: None,
        }
    }
}

impl Thresholds {
    pub fn is_default(&self) -> bool {
        *self == Thresholds::default()
    }
}

/// Envoy's retry budget.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    /// Retries in flight allowed, as a percentage of requests in flight.
    #[serde(default = "default_budget_percent")]
    pub budget_percent: f64,
    /// Retries in flight always allowed, whatever the percentage says.
    #[serde(default = "default_min_retry_concurrency")]
    pub min_retry_concurrency: u32,
}

fn default_budget_percent() -> f64 {
    20.0
}
fn default_min_retry_concurrency() -> u32 {
    3
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            budget_percent: default_budget_percent(),
            min_retry_concurrency: default_min_retry_concurrency(),
        }
    }
}

/// Passive health checking (Envoy's `outlier_detection`): endpoints that
/// keep failing are taken out of load balancing for a while.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierDetection {
    /// 5xx responses in a row that eject an endpoint (with
    /// `split_external_local_origin_errors` off, connection failures,
    /// resets and timeouts count as 5xx too).
    #[serde(default = "five")]
    pub consecutive_5xx: u32,
    /// 502, 503 and 504 responses (and local-origin failures) in a row.
    #[serde(default = "five")]
    pub consecutive_gateway_failure: u32,
    /// Connection failures, resets and timeouts in a row, counted apart
    /// from responses when `split_external_local_origin_errors` is on.
    #[serde(default = "five")]
    pub consecutive_local_origin_failure: u32,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_external_local_origin_errors: bool,
    /// How often ejections are reviewed and success rates worked out.
    #[serde(default = "default_interval")]
    pub interval: Dur,
    /// An ejection lasts this long times the number of times the
    /// endpoint has been ejected, at most `max_ejection_time`.
    #[serde(default = "default_base_ejection")]
    pub base_ejection_time: Dur,
    #[serde(default = "default_max_ejection")]
    pub max_ejection_time: Dur,
    /// A random extra ejection time up to this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ejection_time_jitter: Dur,
    /// At most this share of the cluster's endpoints is ejected at once.
    #[serde(default = "ten")]
    pub max_ejection_percent: u32,
    /// One endpoint may always be ejected, whatever `max_ejection_percent`
    /// says (off by default, as in Envoy: with the default 10 %, a cluster
    /// of fewer than ten endpoints then ejects none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always_eject_one_host: bool,
    /// The percentage of detections that eject, per algorithm.
    #[serde(default = "hundred")]
    pub enforcing_consecutive_5xx: u32,
    #[serde(default)]
    pub enforcing_consecutive_gateway_failure: u32,
    #[serde(default = "hundred")]
    pub enforcing_consecutive_local_origin_failure: u32,
    #[serde(default = "hundred")]
    pub enforcing_success_rate: u32,
    #[serde(default = "hundred")]
    pub enforcing_local_origin_success_rate: u32,
    #[serde(default)]
    pub enforcing_failure_percentage: u32,
    #[serde(default)]
    pub enforcing_failure_percentage_local_origin: u32,
    /// Success rate: endpoints with at least `success_rate_request_volume`
    /// requests in the interval, when at least `success_rate_minimum_hosts`
    /// have, are ejected below mean − stdev × `success_rate_stdev_factor`
    /// / 1000.
    #[serde(default = "five")]
    pub success_rate_minimum_hosts: u32,
    #[serde(default = "hundred")]
    pub success_rate_request_volume: u32,
    #[serde(default = "default_stdev_factor")]
    pub success_rate_stdev_factor: u32,
    /// Failure percentage: endpoints whose failures in the interval reach
    /// this percentage are ejected (same volume rules).
    #[serde(default = "default_failure_percentage")]
    pub failure_percentage_threshold: u32,
    #[serde(default = "five")]
    pub failure_percentage_minimum_hosts: u32,
    #[serde(default = "fifty")]
    pub failure_percentage_request_volume: u32,
}

fn is_zero(d: &Dur) -> bool {
    d.is_zero()
}
fn five() -> u32 {
    5
}
fn ten() -> u32 {
    10
}
fn fifty() -> u32 {
    50
}
fn hundred() -> u32 {
    100
}
fn default_interval() -> Dur {
    Dur::from_secs(10)
}
fn default_base_ejection() -> Dur {
    Dur::from_secs(30)
}
fn default_max_ejection() -> Dur {
    Dur::from_secs(300)
}
fn default_stdev_factor() -> u32 {
    1900
}
fn default_failure_percentage() -> u32 {
    85
}

impl Default for OutlierDetection {
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: five(),
            consecutive_gateway_failure: five(),
            consecutive_local_origin_failure: five(),
            split_external_local_origin_errors: false,
            interval: default_interval(),
            base_ejection_time: default_base_ejection(),
            max_ejection_time: default_max_ejection(),
            max_ejection_time_jitter: Dur::from_millis(0),
            max_ejection_percent: ten(),
            always_eject_one_host: false,
            enforcing_consecutive_5xx: hundred(),
            enforcing_consecutive_gateway_failure: 0,
            enforcing_consecutive_local_origin_failure: hundred(),
            enforcing_success_rate: hundred(),
            enforcing_local_origin_success_rate: hundred(),
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            success_rate_minimum_hosts: five(),
            success_rate_request_volume: hundred(),
            success_rate_stdev_factor: default_stdev_factor(),
            failure_percentage_threshold: default_failure_percentage(),
            failure_percentage_minimum_hosts: five(),
            failure_percentage_request_volume: fifty(),
        }
    }
}
