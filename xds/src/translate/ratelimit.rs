//! Envoy's local rate limit filter (`envoy.filters.http.local_ratelimit`)
//! <-> the model's [`model::LocalRateLimit`] on routes and virtual hosts.
//!
//! As with faults, buckets are configured per route or virtual host
//! (`typed_per_filter_config`), and the connection manager's filter carries
//! no bucket of its own. Descriptors, per-connection and cluster-wide
//! buckets and the newer `rate_limits` actions are refused.

use super::route::{adds_from, adds_to_list};
use super::{R, at, dur_from, dur_to, refuse, unknown_enum, unpack};
use crate::model;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::extensions::common::ratelimit::v3 as xcommon;
use crate::wire::envoy::extensions::filters::http::local_ratelimit::v3 as xlrl;
use crate::wire::envoy::r#type::v3 as xtype;

/// The filter name Legate writes (Envoy's).
pub const RATE_LIMIT_FILTER: &str = "envoy.filters.http.local_ratelimit";
/// The `stat_prefix` Legate writes (Envoy requires one).
const STAT_PREFIX: &str = "http_local_rate_limiter";

fn enabled_from(p: &str, f: &Option<xcore::RuntimeFractionalPercent>) -> R<model::Percent> {
    // Unset: Envoy's default, 0 % ("for safety").
    match f {
        None => Ok(model::Percent::default()),
        Some(r) => super::fault::percent_from(&at(p, "default_value"), &r.default_value),
    }
}

fn enabled_to(p: model::Percent) -> Option<xcore::RuntimeFractionalPercent> {
    Some(xcore::RuntimeFractionalPercent {
        default_value: Some(super::fault::percent_to(p)),
        runtime_key: String::new(),
    })
}

/// A route's or virtual host's bucket.
pub(crate) fn rate_limit_from(p: &str, l: &xlrl::LocalRateLimit) -> R<model::LocalRateLimit> {
    refuse_unsupported(p, l)?;
    let Some(b) = &l.token_bucket else {
        return refuse(
            at(p, "token_bucket"),
            "must be set for a route or virtual host",
        );
    };
    let bp = at(p, "token_bucket");
    let Some(fill) = &b.fill_interval else {
        return refuse(at(&bp, "fill_interval"), "must be set");
    };
    let status = match &l.status {
        // Envoy answers 429 for anything below 400.
        Some(s) if s.code >= 400 => u16::try_from(s.code).unwrap_or(u16::MAX),
        _ => 429,
    };
    Ok(model::LocalRateLimit {
        max_tokens: b.max_tokens,
        tokens_per_fill: b.tokens_per_fill.unwrap_or(1),
        fill_interval: dur_from(&at(&bp, "fill_interval"), fill)?,
        status,
        enabled: enabled_from(&at(p, "filter_enabled"), &l.filter_enabled)?,
        enforced: enabled_from(&at(p, "filter_enforced"), &l.filter_enforced)?,
        x_ratelimit_headers: match xcommon::XRateLimitHeadersRfcVersion::try_from(
            l.enable_x_ratelimit_headers,
        ) {
            Ok(xcommon::XRateLimitHeadersRfcVersion::Off) => false,
            Ok(xcommon::XRateLimitHeadersRfcVersion::DraftVersion03) => true,
            Err(_) => {
                return Err(unknown_enum(
                    &at(p, "enable_x_ratelimit_headers"),
                    l.enable_x_ratelimit_headers,
                ));
            }
        },
        response_headers: adds_from(
            p,
            "response_headers_to_add",
            &l.response_headers_to_add,
            false,
        )?,
        request_headers_when_not_enforced: adds_from(
            p,
            "request_headers_to_add_when_not_enforced",
            &l.request_headers_to_add_when_not_enforced,
            true,
        )?,
    })
}

fn refuse_unsupported(p: &str, l: &xlrl::LocalRateLimit) -> R<()> {
    let refused = [
        ("descriptors", !l.descriptors.is_empty()),
        ("rate_limits", !l.rate_limits.is_empty()),
        ("stage", l.stage != 0),
        (
            "local_rate_limit_per_downstream_connection",
            l.local_rate_limit_per_downstream_connection,
        ),
        (
            "local_cluster_rate_limit",
            l.local_cluster_rate_limit.is_some(),
        ),
        ("vh_rate_limits", l.vh_rate_limits != 0),
        (
            "rate_limited_as_resource_exhausted",
            l.rate_limited_as_resource_exhausted,
        ),
        ("enable_retry_after_header", l.enable_retry_after_header),
    ];
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return refuse(at(p, field), "not supported yet");
    }
    Ok(())
}

/// The connection manager's filter: no bucket of its own.
pub(crate) fn filter_from(p: &str, any: &prost_types::Any) -> R<()> {
    let l: xlrl::LocalRateLimit = unpack(p, any)?;
    refuse_unsupported(p, &l)?;
    if l.token_bucket.is_some() {
        return refuse(
            at(p, "token_bucket"),
            "listener-wide buckets are not supported: set them per route or virtual host (typed_per_filter_config)",
        );
    }
    Ok(())
}

pub(crate) fn rate_limit_to(l: &model::LocalRateLimit) -> xlrl::LocalRateLimit {
    xlrl::LocalRateLimit {
        stat_prefix: STAT_PREFIX.into(),
        status: Some(xtype::HttpStatus {
            code: i32::from(l.status),
        }),
        token_bucket: Some(xtype::TokenBucket {
            max_tokens: l.max_tokens,
            tokens_per_fill: Some(l.tokens_per_fill),
            fill_interval: Some(dur_to(l.fill_interval)),
        }),
        filter_enabled: enabled_to(l.enabled),
        filter_enforced: enabled_to(l.enforced),
        enable_x_ratelimit_headers: if l.x_ratelimit_headers {
            xcommon::XRateLimitHeadersRfcVersion::DraftVersion03 as i32
        } else {
            0
        },
        response_headers_to_add: adds_to_list(&l.response_headers),
        request_headers_to_add_when_not_enforced: adds_to_list(
            &l.request_headers_when_not_enforced,
        ),
        ..Default::default()
    }
}

/// The connection manager's (bucketless) filter config.
pub(crate) fn filter_to() -> prost_types::Any {
    super::to_any(&xlrl::LocalRateLimit {
        stat_prefix: STAT_PREFIX.into(),
        ..Default::default()
    })
}
