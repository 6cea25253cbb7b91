//! A cluster's circuit breakers, outlier detection and panic threshold.

use super::{R, at, at_i, dur_to, opt_dur, refuse, unknown_enum};
use crate::model::{self, RoutingPriority};
use crate::wire::envoy::config::cluster::v3 as xcluster;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::r#type::v3 as xtype;

pub(crate) fn priority_from(p: &str, v: i32) -> R<RoutingPriority> {
    match xcore::RoutingPriority::try_from(v) {
        Ok(xcore::RoutingPriority::Default) => Ok(RoutingPriority::Default),
        Ok(xcore::RoutingPriority::High) => Ok(RoutingPriority::High),
        Err(_) => Err(unknown_enum(p, v)),
    }
}

pub(crate) fn priority_to(p: RoutingPriority) -> i32 {
    match p {
        RoutingPriority::Default => xcore::RoutingPriority::Default as i32,
        RoutingPriority::High => xcore::RoutingPriority::High as i32,
    }
}

pub(crate) fn circuit_breakers_from(
    p: &str,
    cb: &xcluster::CircuitBreakers,
) -> R<model::CircuitBreakers> {
    if !cb.per_host_thresholds.is_empty() {
        return refuse(
            at(p, "per_host_thresholds"),
            "not supported (limits apply across the cluster)",
        );
    }
    let mut out = model::CircuitBreakers::default();
    let mut seen = [false; 2];
    for (i, t) in cb.thresholds.iter().enumerate() {
        let tp = at_i(p, "thresholds", i);
        let prio = priority_from(&at(&tp, "priority"), t.priority)?;
        if std::mem::replace(&mut seen[prio.index()], true) {
            return refuse(
                at(&tp, "priority"),
                format!("{} appears twice", prio.as_str().to_uppercase()),
            );
        }
        if t.max_connection_pools.is_some() {
            return refuse(
                at(&tp, "max_connection_pools"),
                "not supported (Legate keeps one pool per endpoint)",
            );
        }
        let d = model::Thresholds::default();
        let m = out.get_mut(prio);
        m.max_connections = t.max_connections.unwrap_or(d.max_connections);
        m.max_pending_requests = t.max_pending_requests.unwrap_or(d.max_pending_requests);
        m.max_requests = t.max_requests.unwrap_or(d.max_requests);
        // As Envoy: a retry budget overrides max_retries.
        match &t.retry_budget {
            Some(b) => {
                let def = model::RetryBudget::default();
                m.retry_budget = Some(model::RetryBudget {
                    budget_percent: b
                        .budget_percent
                        .as_ref()
                        .map_or(def.budget_percent, |x| x.value),
                    min_retry_concurrency: b
                        .min_retry_concurrency
                        .unwrap_or(def.min_retry_concurrency),
                });
            }
            None => m.max_retries = t.max_retries,
        }
    }
    Ok(out)
}

pub(crate) fn circuit_breakers_to(
    cb: &model::CircuitBreakers,
) -> Option<xcluster::CircuitBreakers> {
    if cb.is_default() {
        return None;
    }
    let thresholds = RoutingPriority::ALL
        .iter()
        .filter(|p| !cb.get(**p).is_default())
        .map(|p| {
            let t = cb.get(*p);
            xcluster::circuit_breakers::Thresholds {
                priority: priority_to(*p),
                max_connections: Some(t.max_connections),
                max_pending_requests: Some(t.max_pending_requests),
                max_requests: Some(t.max_requests),
                max_retries: t.max_retries,
                retry_budget: t.retry_budget.as_ref().map(|b| {
                    xcluster::circuit_breakers::thresholds::RetryBudget {
                        budget_percent: Some(xtype::Percent {
                            value: b.budget_percent,
                        }),
                        min_retry_concurrency: Some(b.min_retry_concurrency),
                    }
                }),
                // Legate always keeps the remaining-capacity gauges.
                track_remaining: true,
                max_connection_pools: None,
            }
        })
        .collect();
    Some(xcluster::CircuitBreakers {
        thresholds,
        per_host_thresholds: Vec::new(),
    })
}

pub(crate) fn outlier_from(p: &str, o: &xcluster::OutlierDetection) -> R<model::OutlierDetection> {
    if !o.monitors.is_empty() {
        return refuse(at(p, "monitors"), "not supported (passive monitors)");
    }
    if o.detect_degraded_hosts == Some(true) {
        return refuse(
            at(p, "detect_degraded_hosts"),
            "not supported (Legate does not mark hosts degraded by x-envoy-degraded)",
        );
    }
    let d = model::OutlierDetection::default();
    let base_ejection_time = opt_dur(
        &at(p, "base_ejection_time"),
        &o.base_ejection_time,
        d.base_ejection_time,
    )?;
    Ok(model::OutlierDetection {
        consecutive_5xx: o.consecutive_5xx.unwrap_or(d.consecutive_5xx),
        consecutive_gateway_failure: o
            .consecutive_gateway_failure
            .unwrap_or(d.consecutive_gateway_failure),
        consecutive_local_origin_failure: o
            .consecutive_local_origin_failure
            .unwrap_or(d.consecutive_local_origin_failure),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        interval: opt_dur(&at(p, "interval"), &o.interval, d.interval)?,
        base_ejection_time,
        // Envoy: the default, or base_ejection_time when that is larger.
        max_ejection_time: opt_dur(
            &at(p, "max_ejection_time"),
            &o.max_ejection_time,
            d.max_ejection_time.max(base_ejection_time),
        )?,
        max_ejection_time_jitter: opt_dur(
            &at(p, "max_ejection_time_jitter"),
            &o.max_ejection_time_jitter,
            d.max_ejection_time_jitter,
        )?,
        max_ejection_percent: o.max_ejection_percent.unwrap_or(d.max_ejection_percent),
        always_eject_one_host: o.always_eject_one_host.unwrap_or(false),
        enforcing_consecutive_5xx: o
            .enforcing_consecutive_5xx
            .unwrap_or(d.enforcing_consecutive_5xx),
        enforcing_consecutive_gateway_failure: o
            .enforcing_consecutive_gateway_failure
            .unwrap_or(d.enforcing_consecutive_gateway_failure),
        enforcing_consecutive_local_origin_failure: o
            .enforcing_consecutive_local_origin_failure
            .unwrap_or(d.enforcing_consecutive_local_origin_failure),
        enforcing_success_rate: o.enforcing_success_rate.unwrap_or(d.enforcing_success_rate),
        enforcing_local_origin_success_rate: o
            .enforcing_local_origin_success_rate
            .unwrap_or(d.enforcing_local_origin_success_rate),
        enforcing_failure_percentage: o
            .enforcing_failure_percentage
            .unwrap_or(d.enforcing_failure_percentage),
        enforcing_failure_percentage_local_origin: o
            .enforcing_failure_percentage_local_origin
            .unwrap_or(d.enforcing_failure_percentage_local_origin),
        success_rate_minimum_hosts: o
            .success_rate_minimum_hosts
            .unwrap_or(d.success_rate_minimum_hosts),
        success_rate_request_volume: o
            .success_rate_request_volume
            .unwrap_or(d.success_rate_request_volume),
        success_rate_stdev_factor: o
            .success_rate_stdev_factor
            .unwrap_or(d.success_rate_stdev_factor),
        failure_percentage_threshold: o
            .failure_percentage_threshold
            .unwrap_or(d.failure_percentage_threshold),
        failure_percentage_minimum_hosts: o
            .failure_percentage_minimum_hosts
            .unwrap_or(d.failure_percentage_minimum_hosts),
        failure_percentage_request_volume: o
            .failure_percentage_request_volume
            .unwrap_or(d.failure_percentage_request_volume),
    })
}

pub(crate) fn outlier_to(o: &model::OutlierDetection) -> xcluster::OutlierDetection {
    xcluster::OutlierDetection {
        consecutive_5xx: Some(o.consecutive_5xx),
        interval: Some(dur_to(o.interval)),
        base_ejection_time: Some(dur_to(o.base_ejection_time)),
        max_ejection_percent: Some(o.max_ejection_percent),
        enforcing_consecutive_5xx: Some(o.enforcing_consecutive_5xx),
        enforcing_success_rate: Some(o.enforcing_success_rate),
        success_rate_minimum_hosts: Some(o.success_rate_minimum_hosts),
        success_rate_request_volume: Some(o.success_rate_request_volume),
        success_rate_stdev_factor: Some(o.success_rate_stdev_factor),
        consecutive_gateway_failure: Some(o.consecutive_gateway_failure),
        enforcing_consecutive_gateway_failure: Some(o.enforcing_consecutive_gateway_failure),
        split_external_local_origin_errors: o.split_external_local_origin_errors,
        consecutive_local_origin_failure: Some(o.consecutive_local_origin_failure),
        enforcing_consecutive_local_origin_failure: Some(
            o.enforcing_consecutive_local_origin_failure,
        ),
        enforcing_local_origin_success_rate: Some(o.enforcing_local_origin_success_rate),
        failure_percentage_threshold: Some(o.failure_percentage_threshold),
        enforcing_failure_percentage: Some(o.enforcing_failure_percentage),
        enforcing_failure_percentage_local_origin: Some(
            o.enforcing_failure_percentage_local_origin,
        ),
        failure_percentage_minimum_hosts: Some(o.failure_percentage_minimum_hosts),
        failure_percentage_request_volume: Some(o.failure_percentage_request_volume),
        max_ejection_time: Some(dur_to(o.max_ejection_time)),
        max_ejection_time_jitter: Some(dur_to(o.max_ejection_time_jitter)),
        always_eject_one_host: Some(o.always_eject_one_host),
        // What Legate does: an active health check pass leaves an ejection
        // to run its time.
        successful_active_health_check_uneject_host: Some(false),
        monitors: Vec::new(),
        detect_degraded_hosts: None,
    }
}

pub(crate) fn common_lb_from(p: &str, c: &xcluster::cluster::CommonLbConfig) -> R<f64> {
    Ok(match &c.healthy_panic_threshold {
        None => 50.0,
        Some(t) if (0.0..=100.0).contains(&t.value) => t.value,
        Some(_) => {
            return refuse(
                at(p, "healthy_panic_threshold"),
                "must be a percentage between 0 and 100",
            );
        }
    })
}

pub(crate) fn common_lb_to(threshold: f64) -> xcluster::cluster::CommonLbConfig {
    xcluster::cluster::CommonLbConfig {
        healthy_panic_threshold: Some(xtype::Percent { value: threshold }),
    }
}
