//! Envoy's `HealthCheck` (a Cluster's `health_checks`) <-> the model's
//! [`model::HealthCheck`].
//!
//! Refused: `no_traffic_interval` and `no_traffic_healthy_interval` (Legate
//! checks at `interval` whether or not the cluster has had traffic),
//! `alt_port`, `tls_options`, `transport_socket_match_criteria`, HTTP/3,
//! an HTTP check's `request_headers_to_remove`, body (`send`, `receive`,
//! `response_buffer_size`), `retriable_statuses`, `service_name_matcher`
//! and methods other than GET, a TCP check's `proxy_protocol_config`, a
//! gRPC check's `initial_metadata`, and checkers other than HTTP, TCP and
//! gRPC (`custom_health_check`). Envoy's event logging fields
//! (`event_log_path`, `event_logger`, `event_service`,
//! `always_log_health_check_failures`, `always_log_health_check_success`)
//! are left out of the wire subset: accepted and ignored.
//! An absent `unhealthy_threshold` or `healthy_threshold` (which Envoy
//! requires) takes the model's default (3 and 2). Envoy's `Payload.text`
//! is hex: it becomes the model's `hex`; `binary` becomes `text` when it is
//! UTF-8, `hex` otherwise.

use super::{R, TLS_NOT_YET, at, at_i, dur_from, dur_to, refuse, unknown_enum};
use crate::duration::Dur;
use crate::model;
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::r#type::v3 as xtype;
use xcore::health_check as xhc;

pub(crate) fn health_checks_from(
    p: &str,
    checks: &[xcore::HealthCheck],
) -> R<Vec<model::HealthCheck>> {
    checks
        .iter()
        .enumerate()
        .map(|(i, hc)| health_check_from(&at_i(p, "health_checks", i), hc))
        .collect()
}

fn required_dur(p: &str, field: &str, d: &Option<prost_types::Duration>) -> R<Dur> {
    match d {
        Some(d) => dur_from(&at(p, field), d),
        None => refuse(at(p, field), "must be set"),
    }
}

fn optional_dur(p: &str, field: &str, d: &Option<prost_types::Duration>) -> R<Option<Dur>> {
    d.as_ref().map(|d| dur_from(&at(p, field), d)).transpose()
}

/// Refuses the first `(field, set, message)` that is set.
fn refuse_set(p: &str, fields: &[(&str, bool, &str)]) -> R<()> {
    match fields.iter().find(|(_, set, _)| *set) {
        Some((field, _, message)) => refuse(at(p, field), *message),
        None => Ok(()),
    }
}

const NO_TRAFFIC: &str =
    "not supported (Legate checks at `interval` whether or not the cluster has had traffic)";

fn health_check_from(p: &str, hc: &xcore::HealthCheck) -> R<model::HealthCheck> {
    use xhc::HealthChecker as H;
    refuse_set(
        p,
        &[
            (
                "no_traffic_interval",
                hc.no_traffic_interval.is_some(),
                NO_TRAFFIC,
            ),
            (
                "no_traffic_healthy_interval",
                hc.no_traffic_healthy_interval.is_some(),
                NO_TRAFFIC,
            ),
            (
                "alt_port",
                hc.alt_port.is_some(),
                "not supported (Legate checks the endpoint's own port)",
            ),
            ("tls_options", hc.tls_options.is_some(), TLS_NOT_YET),
            (
                "transport_socket_match_criteria",
                hc.transport_socket_match_criteria.is_some(),
                "not supported (transport_socket_matches are not supported)",
            ),
        ],
    )?;
    let mut m = model::HealthCheck {
        timeout: required_dur(p, "timeout", &hc.timeout)?,
        interval: required_dur(p, "interval", &hc.interval)?,
        initial_jitter: optional_dur(p, "initial_jitter", &hc.initial_jitter)?.unwrap_or_default(),
        interval_jitter: optional_dur(p, "interval_jitter", &hc.interval_jitter)?
            .unwrap_or_default(),
        interval_jitter_percent: hc.interval_jitter_percent,
        unhealthy_threshold: hc.unhealthy_threshold.unwrap_or(3),
        healthy_threshold: hc.healthy_threshold.unwrap_or(2),
        unhealthy_interval: optional_dur(p, "unhealthy_interval", &hc.unhealthy_interval)?,
        unhealthy_edge_interval: optional_dur(
            p,
            "unhealthy_edge_interval",
            &hc.unhealthy_edge_interval,
        )?,
        healthy_edge_interval: optional_dur(p, "healthy_edge_interval", &hc.healthy_edge_interval)?,
        reuse_connection: hc.reuse_connection.unwrap_or(true),
        http: None,
        tcp: None,
        grpc: None,
    };
    match &hc.health_checker {
        None => {
            return refuse(
                p,
                "set http_health_check, tcp_health_check or grpc_health_check (custom health checkers are not supported)",
            );
        }
        Some(H::HttpHealthCheck(h)) => m.http = Some(http_from(&at(p, "http_health_check"), h)?),
        Some(H::CustomHealthCheck(c)) => {
            return refuse(
                at(p, "custom_health_check"),
                format!("custom health checkers are not supported ({:?})", c.name),
            );
        }
        Some(H::TcpHealthCheck(t)) => {
            let tp = at(p, "tcp_health_check");
            if t.proxy_protocol_config.is_some() {
                return refuse(
                    at(&tp, "proxy_protocol_config"),
                    "not supported (Legate's TCP checks send no PROXY protocol header)",
                );
            }
            m.tcp = Some(model::TcpHealthCheck {
                send: t
                    .send
                    .as_ref()
                    .map(|s| payload_from(&at(&tp, "send"), s))
                    .transpose()?,
                receive: t
                    .receive
                    .iter()
                    .enumerate()
                    .map(|(i, r)| payload_from(&at_i(&tp, "receive", i), r))
                    .collect::<R<_>>()?,
            });
        }
        Some(H::GrpcHealthCheck(g)) => {
            if !g.initial_metadata.is_empty() {
                return refuse(
                    at(&at(p, "grpc_health_check"), "initial_metadata"),
                    "not supported (Legate's gRPC checks send no extra metadata)",
                );
            }
            m.grpc = Some(model::GrpcHealthCheck {
                service_name: g.service_name.clone(),
                authority: (!g.authority.is_empty()).then(|| g.authority.clone()),
            });
        }
    }
    // The model's own checks, reported at Envoy's paths.
    if let Some(e) = m.problems().into_iter().next() {
        return refuse(envoy_path(p, &e.path), e.message);
    }
    Ok(m)
}

fn http_from(p: &str, h: &xhc::HttpHealthCheck) -> R<model::HttpHealthCheck> {
    const NO_BODY: &str = "not supported (Legate's HTTP checks do not read the response body)";
    refuse_set(
        p,
        &[
            (
                "send",
                h.send.is_some(),
                "not supported (Legate's HTTP checks send no request body)",
            ),
            ("receive", !h.receive.is_empty(), NO_BODY),
            (
                "response_buffer_size",
                h.response_buffer_size.is_some(),
                NO_BODY,
            ),
            (
                "request_headers_to_remove",
                !h.request_headers_to_remove.is_empty(),
                "not supported",
            ),
            (
                "retriable_statuses",
                !h.retriable_statuses.is_empty(),
                "not supported (a status outside expected_statuses makes the endpoint unhealthy at once)",
            ),
            (
                "service_name_matcher",
                h.service_name_matcher.is_some(),
                "not supported (Legate does not check the x-envoy-upstream-healthchecked-cluster response header)",
            ),
        ],
    )?;
    match xcore::RequestMethod::try_from(h.method) {
        Ok(xcore::RequestMethod::MethodUnspecified | xcore::RequestMethod::Get) => {}
        Ok(other) => {
            return refuse(
                at(p, "method"),
                format!(
                    "{} is not supported (Legate's HTTP checks send GET)",
                    other.as_str_name()
                ),
            );
        }
        Err(_) => return Err(unknown_enum(&at(p, "method"), h.method)),
    }
    if h.path.is_empty() {
        return refuse(at(p, "path"), "must be set");
    }
    let codec = match xtype::CodecClientType::try_from(h.codec_client_type) {
        Ok(xtype::CodecClientType::Http1) => model::HealthCheckCodec::Http1,
        Ok(xtype::CodecClientType::Http2) => model::HealthCheckCodec::Http2,
        Ok(xtype::CodecClientType::Http3) => {
            return refuse(
                at(p, "codec_client_type"),
                "HTTP3 is not supported (use HTTP1 or HTTP2)",
            );
        }
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "codec_client_type"),
                h.codec_client_type,
            ));
        }
    };
    // Out of u16's range is out of [100, 600] too: the model's checks
    // (below) report it.
    let clamp = |v: i64| u16::try_from(v.clamp(0, i64::from(u16::MAX))).unwrap_or(u16::MAX);
    let expected_statuses = h
        .expected_statuses
        .iter()
        .map(|r| model::StatusRange {
            start: clamp(r.start),
            end: clamp(r.end),
        })
        .collect();
    Ok(model::HttpHealthCheck {
        path: h.path.clone(),
        host: (!h.host.is_empty()).then(|| h.host.clone()),
        request_headers_to_add: super::route::adds_from(
            p,
            "request_headers_to_add",
            &h.request_headers_to_add,
            false,
        )?,
        expected_statuses,
        codec,
    })
}

fn payload_from(p: &str, pl: &xhc::Payload) -> R<model::Payload> {
    use xhc::payload::Payload as P;
    match &pl.payload {
        Some(P::Text(hex)) => Ok(model::Payload::hex(hex)),
        Some(P::Binary(b)) => Ok(match std::str::from_utf8(b) {
            Ok(text) => model::Payload::text(text),
            Err(_) => {
                model::Payload::hex(&b.iter().map(|x| format!("{x:02x}")).collect::<String>())
            }
        }),
        None => refuse(p, "set text or binary"),
    }
}

/// The Envoy path of the model's problem at `path` (relative to the check
/// at `p`).
fn envoy_path(p: &str, path: &str) -> String {
    let mut segs: Vec<String> = path.split('.').map(String::from).collect();
    match segs.first().map(String::as_str) {
        Some("") | None => return p.to_string(),
        Some("http") => segs[0] = "http_health_check".into(),
        Some("tcp") => segs[0] = "tcp_health_check".into(),
        Some("grpc") => segs[0] = "grpc_health_check".into(),
        _ => {}
    }
    match segs.get(1).map(String::as_str) {
        Some("codec") => segs[1] = "codec_client_type".into(),
        Some(s) if s.starts_with("request_headers_to_add[") => {
            // `name` / `value` are `header.key` / `header.value`.
            if let Some(f) = segs.get_mut(2) {
                *f = match f.as_str() {
                    "name" => "header.key".into(),
                    other => format!("header.{other}"),
                };
            }
        }
        Some(s) if s == "send" || s.starts_with("receive[") => {
            // The model's `text` is Envoy's `binary`, its `hex` Envoy's `text`.
            if let Some(f) = segs.get_mut(2) {
                *f = match f.as_str() {
                    "text" => "binary".into(),
                    _ => "text".into(),
                };
            }
        }
        _ => {}
    }
    at(p, &segs.join("."))
}

pub(crate) fn health_checks_to(checks: &[model::HealthCheck]) -> Vec<xcore::HealthCheck> {
    checks.iter().map(health_check_to).collect()
}

fn health_check_to(m: &model::HealthCheck) -> xcore::HealthCheck {
    use xhc::HealthChecker as H;
    let nonzero = |d: Dur| (!d.is_zero()).then(|| dur_to(d));
    let health_checker = match m.checker() {
        Some(model::Checker::Http(h)) => Some(H::HttpHealthCheck(xhc::HttpHealthCheck {
            host: h.host.clone().unwrap_or_default(),
            path: h.path.clone(),
            send: None,
            receive: Vec::new(),
            response_buffer_size: None,
            request_headers_to_add: super::route::adds_to_list(&h.request_headers_to_add),
            request_headers_to_remove: Vec::new(),
            expected_statuses: h
                .expected_statuses
                .iter()
                .map(|r| xtype::Int64Range {
                    start: r.start.into(),
                    end: r.end.into(),
                })
                .collect(),
            retriable_statuses: Vec::new(),
            codec_client_type: match h.codec {
                model::HealthCheckCodec::Http1 => xtype::CodecClientType::Http1,
                model::HealthCheckCodec::Http2 => xtype::CodecClientType::Http2,
            } as i32,
            service_name_matcher: None,
            method: xcore::RequestMethod::MethodUnspecified as i32,
        })),
        Some(model::Checker::Tcp(t)) => Some(H::TcpHealthCheck(xhc::TcpHealthCheck {
            send: t.send.as_ref().map(payload_to),
            receive: t.receive.iter().map(payload_to).collect(),
            proxy_protocol_config: None,
        })),
        Some(model::Checker::Grpc(g)) => Some(H::GrpcHealthCheck(xhc::GrpcHealthCheck {
            service_name: g.service_name.clone(),
            authority: g.authority.clone().unwrap_or_default(),
            initial_metadata: Vec::new(),
        })),
        // Not valid; the model's validation reports it.
        None => None,
    };
    xcore::HealthCheck {
        timeout: Some(dur_to(m.timeout)),
        interval: Some(dur_to(m.interval)),
        initial_jitter: nonzero(m.initial_jitter),
        interval_jitter: nonzero(m.interval_jitter),
        interval_jitter_percent: m.interval_jitter_percent,
        unhealthy_threshold: Some(m.unhealthy_threshold),
        healthy_threshold: Some(m.healthy_threshold),
        alt_port: None,
        reuse_connection: Some(m.reuse_connection),
        health_checker,
        no_traffic_interval: None,
        no_traffic_healthy_interval: None,
        unhealthy_interval: m.unhealthy_interval.map(dur_to),
        unhealthy_edge_interval: m.unhealthy_edge_interval.map(dur_to),
        healthy_edge_interval: m.healthy_edge_interval.map(dur_to),
        tls_options: None,
        transport_socket_match_criteria: None,
    }
}

fn payload_to(p: &model::Payload) -> xhc::Payload {
    use xhc::payload::Payload as P;
    xhc::Payload {
        payload: match (&p.text, &p.hex) {
            (Some(t), _) => Some(P::Binary(t.as_bytes().to_vec())),
            (None, Some(h)) => Some(P::Text(h.clone())),
            // Not valid; the model's validation reports it.
            (None, None) => None,
        },
    }
}
