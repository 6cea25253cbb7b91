//! Envoy's `RetryPolicy` (on routes and virtual hosts) <-> the model's
//! [`model::RetryPolicy`].

use super::{R, at, at_i, dur_from, dur_to, refuse};
use crate::duration::Dur;
use crate::model::{self, RetryOn};
use crate::wire::envoy::config::route::v3 as xroute;

/// The retry host predicate Legate honours.
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

pub(crate) fn retry_from(p: &str, r: &xroute::RetryPolicy) -> R<model::RetryPolicy> {
    let refused = [
        ("per_try_idle_timeout", r.per_try_idle_timeout.is_some()),
        ("retry_priority", r.retry_priority.is_some()),
        (
            "rate_limited_retry_back_off",
            r.rate_limited_retry_back_off.is_some(),
        ),
        (
            "retry_options_predicates",
            !r.retry_options_predicates.is_empty(),
        ),
        ("retriable_headers", !r.retriable_headers.is_empty()),
        (
            "retriable_request_headers",
            !r.retriable_request_headers.is_empty(),
        ),
        ("refresh_cluster_on_retry", r.refresh_cluster_on_retry),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return refuse(at(p, field), "not supported yet");
    }
    let mut retry_on = Vec::new();
    for name in r
        .retry_on
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
    {
        match RetryOn::from_name(name) {
            Some(c) if !retry_on.contains(&c) => retry_on.push(c),
            Some(_) => {}
            None => {
                return refuse(
                    at(p, "retry_on"),
                    format!("{name:?} is not a retry condition Legate supports"),
                );
            }
        }
    }
    let mut retry_previous_hosts = false;
    for (i, h) in r.retry_host_predicate.iter().enumerate() {
        if h.name != PREVIOUS_HOSTS {
            return refuse(
                at(&at_i(p, "retry_host_predicate", i), "name"),
                format!("{:?}: only {PREVIOUS_HOSTS} is supported", h.name),
            );
        }
        retry_previous_hosts = true;
    }
    let (backoff_base, backoff_max) = match &r.retry_back_off {
        None => (Dur::from_millis(25), None),
        Some(b) => {
            let bp = at(p, "retry_back_off");
            let Some(base) = &b.base_interval else {
                return refuse(at(&bp, "base_interval"), "must be set");
            };
            let max = match &b.max_interval {
                Some(m) => Some(dur_from(&at(&bp, "max_interval"), m)?),
                None => None,
            };
            (dur_from(&at(&bp, "base_interval"), base)?, max)
        }
    };
    Ok(model::RetryPolicy {
        retry_on,
        num_retries: r.num_retries.unwrap_or(1),
        per_try_timeout: match &r.per_try_timeout {
            // Envoy: zero means no per-try timeout.
            Some(t) if t.seconds != 0 || t.nanos != 0 => {
                Some(dur_from(&at(p, "per_try_timeout"), t)?)
            }
            _ => None,
        },
        retriable_status_codes: r
            .retriable_status_codes
            .iter()
            .map(|c| u16::try_from(*c).unwrap_or(u16::MAX))
            .collect(),
        backoff_base,
        backoff_max,
        retry_previous_hosts,
    })
}

pub(crate) fn retry_to(r: &model::RetryPolicy) -> xroute::RetryPolicy {
    xroute::RetryPolicy {
        retry_on: r
            .retry_on
            .iter()
            .map(|c| c.name())
            .collect::<Vec<_>>()
            .join(","),
        num_retries: Some(r.num_retries),
        per_try_timeout: r.per_try_timeout.map(dur_to),
        retriable_status_codes: r
            .retriable_status_codes
            .iter()
            .map(|c| u32::from(*c))
            .collect(),
        retry_back_off: Some(xroute::retry_policy::RetryBackOff {
            base_interval: Some(dur_to(r.backoff_base)),
            max_interval: r.backoff_max.map(dur_to),
        }),
        retry_host_predicate: if r.retry_previous_hosts {
            vec![xroute::retry_policy::RetryHostPredicate {
                name: PREVIOUS_HOSTS.into(),
                config_type: None,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    }
}
