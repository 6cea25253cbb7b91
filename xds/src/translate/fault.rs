//! Envoy's HTTP fault filter (`envoy.filters.http.fault`) <-> the model's
//! per-route [`model::FaultInjection`].
//!
//! Faults are configured per route or per virtual host through
//! `typed_per_filter_config` (as Istio does; see [`super::filters`]), and
//! the connection manager's fault filter must have an empty config
//! (listener-wide fault defaults are refused). An empty per-route config
//! means no faults.

use super::{R, at, dur_from, dur_to, refuse, type_name, unknown_enum, unpack};
use crate::model;
use crate::wire::envoy::extensions::filters::common::fault::v3 as xcommon;
use crate::wire::envoy::extensions::filters::http::fault::v3 as xfault;
use crate::wire::envoy::r#type::v3 as xtype;

/// The filter name Legate writes (Envoy's and Istio's).
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// Whether `any` is an HTTPFault config.
pub(crate) fn is_fault(any: &prost_types::Any) -> bool {
    type_name(&any.type_url) == <xfault::HttpFault as prost::Name>::full_name()
}

/// A fault filter config in the connection manager must be empty: faults
/// are set per route.
pub(crate) fn filter_from(p: &str, any: &prost_types::Any) -> R<()> {
    let f: xfault::HttpFault = unpack(p, any)?;
    if fault_from(p, &f)?.is_some() || f.max_active_faults.is_some() {
        return refuse(
            p,
            "listener-wide fault defaults are not supported: set faults per route or virtual host (typed_per_filter_config), as Istio does",
        );
    }
    Ok(())
}

pub(crate) fn percent_from(p: &str, f: &Option<xtype::FractionalPercent>) -> R<model::Percent> {
    use xtype::fractional_percent::DenominatorType as D;
    let Some(f) = f else {
        // Unset: proto defaults, 0 out of 100.
        return Ok(model::Percent::default());
    };
    let denominator = match D::try_from(f.denominator) {
        Ok(D::Hundred) => 100,
        Ok(D::TenThousand) => 10_000,
        Ok(D::Million) => 1_000_000,
        Err(_) => return Err(unknown_enum(&at(p, "denominator"), f.denominator)),
    };
    Ok(model::Percent {
        // Envoy caps a numerator above its denominator at 100 %.
        numerator: f.numerator.min(denominator),
        denominator,
    })
}

pub(crate) fn percent_to(p: model::Percent) -> xtype::FractionalPercent {
    use xtype::fractional_percent::DenominatorType as D;
    let denominator = match p.denominator {
        100 => D::Hundred,
        10_000 => D::TenThousand,
        _ => D::Million,
    };
    xtype::FractionalPercent {
        numerator: p.numerator,
        denominator: denominator as i32,
    }
}

/// `None`: a config that injects nothing.
pub(crate) fn fault_from(p: &str, f: &xfault::HttpFault) -> R<Option<model::FaultInjection>> {
    let refused = [
        ("upstream_cluster", !f.upstream_cluster.is_empty()),
        ("headers", !f.headers.is_empty()),
        ("downstream_nodes", !f.downstream_nodes.is_empty()),
        ("response_rate_limit", f.response_rate_limit.is_some()),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return refuse(at(p, field), "not supported yet");
    }
    // The *_runtime keys name runtime overrides; with no runtime layer the
    // configured values apply, which is what Legate does.
    let delay = match &f.delay {
        None => None,
        Some(d) => {
            use xcommon::fault_delay::FaultDelaySecifier as S;
            let dp = at(p, "delay");
            let (fixed, from_header) = match &d.fault_delay_secifier {
                Some(S::FixedDelay(t)) => (Some(dur_from(&at(&dp, "fixed_delay"), t)?), false),
                Some(S::HeaderDelay(_)) => (None, true),
                None => return refuse(dp, "set fixed_delay or header_delay"),
            };
            Some(model::FaultDelay {
                fixed,
                from_header,
                percent: percent_from(&at(&dp, "percentage"), &d.percentage)?,
            })
        }
    };
    let abort = match &f.abort {
        None => None,
        Some(a) => {
            use xfault::fault_abort::ErrorType as E;
            let ap = at(p, "abort");
            let mut abort = model::FaultAbort {
                percent: percent_from(&at(&ap, "percentage"), &a.percentage)?,
                body: (!a.response_body.is_empty()).then(|| a.response_body.clone()),
                ..Default::default()
            };
            match &a.error_type {
                Some(E::HttpStatus(s)) => {
                    abort.http_status = Some(u16::try_from(*s).unwrap_or(u16::MAX));
                }
                Some(E::GrpcStatus(s)) => abort.grpc_status = Some(*s),
                Some(E::HeaderAbort(_)) => abort.from_header = true,
                None => return refuse(ap, "set http_status, grpc_status or header_abort"),
            }
            Some(abort)
        }
    };
    if delay.is_none() && abort.is_none() {
        return Ok(None);
    }
    Ok(Some(model::FaultInjection {
        delay,
        abort,
        max_active_faults: f.max_active_faults,
    }))
}

pub(crate) fn fault_to(f: &model::FaultInjection) -> xfault::HttpFault {
    xfault::HttpFault {
        delay: f.delay.as_ref().map(|d| {
            use xcommon::fault_delay::{FaultDelaySecifier as S, HeaderDelay};
            xcommon::FaultDelay {
                fault_delay_secifier: Some(match d.fixed {
                    Some(t) if !d.from_header => S::FixedDelay(dur_to(t)),
                    _ => S::HeaderDelay(HeaderDelay {}),
                }),
                percentage: Some(percent_to(d.percent)),
            }
        }),
        abort: f.abort.as_ref().map(|a| {
            use xfault::fault_abort::{ErrorType as E, HeaderAbort};
            xfault::FaultAbort {
                error_type: Some(match (a.http_status, a.grpc_status) {
                    (Some(s), _) => E::HttpStatus(s.into()),
                    (None, Some(s)) => E::GrpcStatus(s),
                    (None, None) => E::HeaderAbort(HeaderAbort {}),
                }),
                percentage: Some(percent_to(a.percent)),
                response_body: a.body.clone().unwrap_or_default(),
            }
        }),
        max_active_faults: f.max_active_faults,
        ..Default::default()
    }
}

/// The connection manager's (empty) fault filter.
pub(crate) fn filter_to() -> prost_types::Any {
    super::to_any(&xfault::HttpFault::default())
}
