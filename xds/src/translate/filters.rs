//! Per-route HTTP filter configuration (`typed_per_filter_config` on
//! routes and virtual hosts) and the connection manager's HTTP filters:
//! fault injection ([`super::fault`]) and local rate limiting
//! ([`super::ratelimit`]), then the router. A route without a config of its
//! own takes its virtual host's.

use super::{R, at, refuse, type_name, unpack};
use crate::model;
use crate::wire::envoy::extensions::filters::http::fault::v3 as xfault;
use crate::wire::envoy::extensions::filters::http::local_ratelimit::v3 as xlrl;
use crate::wire::envoy::extensions::filters::network::http_connection_manager::v3 as xhcm;
use std::collections::HashMap;

/// What a route or virtual host configures (`None`: nothing given for
/// that filter; `Some(None)`: a config that does nothing).
#[derive(Default)]
pub(crate) struct PerFilter {
    pub fault: Option<Option<model::FaultInjection>>,
    pub rate_limit: Option<model::LocalRateLimit>,
}

pub(crate) fn is_rate_limit(any: &prost_types::Any) -> bool {
    type_name(&any.type_url) == <xlrl::LocalRateLimit as prost::Name>::full_name()
}

pub(crate) fn per_filter_config_from(
    p: &str,
    configs: &HashMap<String, prost_types::Any>,
) -> R<PerFilter> {
    let mut names: Vec<&String> = configs.keys().collect();
    names.sort();
    let mut out = PerFilter::default();
    for name in names {
        let fp = at(&at(p, "typed_per_filter_config"), name);
        let any = &configs[name];
        if super::fault::is_fault(any) {
            if out.fault.is_some() {
                return refuse(fp, "a second fault filter config");
            }
            let f: xfault::HttpFault = unpack(&fp, any)?;
            out.fault = Some(super::fault::fault_from(&fp, &f)?);
        } else if is_rate_limit(any) {
            if out.rate_limit.is_some() {
                return refuse(fp, "a second local rate limit config");
            }
            let l: xlrl::LocalRateLimit = unpack(&fp, any)?;
            out.rate_limit = Some(super::ratelimit::rate_limit_from(&fp, &l)?);
        } else {
            return refuse(
                fp,
                format!(
                    "not supported ({}): Legate configures the fault and local rate limit filters per route",
                    any.type_url
                ),
            );
        }
    }
    Ok(out)
}

pub(crate) fn per_filter_config_to(
    fault: &Option<model::FaultInjection>,
    rate_limit: &Option<model::LocalRateLimit>,
) -> HashMap<String, prost_types::Any> {
    let mut out = HashMap::new();
    if let Some(f) = fault {
        out.insert(
            super::fault::FAULT_FILTER.to_string(),
            super::to_any(&super::fault::fault_to(f)),
        );
    }
    if let Some(l) = rate_limit {
        out.insert(
            super::ratelimit::RATE_LIMIT_FILTER.to_string(),
            super::to_any(&super::ratelimit::rate_limit_to(l)),
        );
    }
    out
}

/// Checks a connection manager filter other than the router: `Ok(true)`
/// for one Legate has (its config checked), `Ok(false)` for others.
pub(crate) fn http_filter_from(p: &str, any: &prost_types::Any) -> R<bool> {
    if super::fault::is_fault(any) {
        super::fault::filter_from(p, any)?;
        Ok(true)
    } else if is_rate_limit(any) {
        super::ratelimit::filter_from(p, any)?;
        Ok(true)
    } else {
        Ok(false)
    }
}

/// The connection manager's filters before the router: each with no
/// config of its own (routes configure them), marked optional.
pub(crate) fn http_filters_to() -> Vec<xhcm::HttpFilter> {
    [
        (super::fault::FAULT_FILTER, super::fault::filter_to()),
        (
            super::ratelimit::RATE_LIMIT_FILTER,
            super::ratelimit::filter_to(),
        ),
    ]
    .into_iter()
    .map(|(name, any)| xhcm::HttpFilter {
        name: name.into(),
        config_type: Some(xhcm::http_filter::ConfigType::TypedConfig(any)),
        // Clients without the filter may skip it (proxyless gRPC has no
        // local rate limit); Envoy and Legate have both.
        is_optional: true,
        ..Default::default()
    })
    .collect()
}
