//! Active health checking (Envoy's `Cluster.health_checks`): each endpoint
//! of the cluster is probed every `interval` with an HTTP request, a TCP
//! connection (optionally with a payload exchange) or a gRPC
//! `grpc.health.v1.Health/Check` call. Envoy's names, semantics and
//! defaults, except that Legate checks at `interval` whether or not the
//! cluster has had traffic (Envoy's `no_traffic_interval` is not
//! supported).

use crate::duration::Dur;
use crate::validate::{FieldError, check_header_name, check_header_value};
use serde::{Deserialize, Serialize};

/// One health check of a cluster. Exactly one of `http`, `tcp` and `grpc`
/// is set. With several checks, an endpoint takes traffic only while it
/// passes every one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Time allowed for one check: connecting, sending and the whole
    /// answer. A check that takes longer fails (as a network failure).
    pub timeout: Dur,
    /// Time between the end of a check and the start of the next.
    pub interval: Dur,
    /// The first check of a new endpoint waits a random time up to this.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub initial_jitter: Dur,
    /// A random time up to this is added to every interval.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub interval_jitter: Dur,
    /// A random time up to this percentage of the interval is added to
    /// every interval (on top of `interval_jitter`).
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub interval_jitter_percent: u32,
    /// Consecutive failed checks that make a healthy endpoint unhealthy.
    /// Only network failures and timeouts count: an HTTP status outside
    /// `expected_statuses` or a gRPC answer other than SERVING makes it
    /// unhealthy at once (as Envoy does).
    #[serde(default = "default_unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Consecutive passed checks that make an unhealthy endpoint healthy
    /// again (a new endpoint's first pass makes it healthy at once).
    #[serde(default = "default_healthy_threshold")]
    pub healthy_threshold: u32,
    /// The interval after a failed check while the endpoint is unhealthy
    /// (default `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_interval: Option<Dur>,
    /// The interval after a failed check that did not yet make a healthy
    /// endpoint unhealthy (default `unhealthy_interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_edge_interval: Option<Dur>,
    /// The interval after a passed check that did not yet make an
    /// unhealthy endpoint healthy (default `interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_edge_interval: Option<Dur>,
    /// Keep the connection open between checks (HTTP keep-alive, one
    /// HTTP/2 connection, or the TCP connection of a payload check).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub reuse_connection: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheck>,
}

/// An HTTP check: `GET path` with `Host: host` and `User-Agent: Legate/HC`;
/// it passes when the status is in `expected_statuses`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpHealthCheck {
    pub path: String,
    /// The `Host` (`:authority`) sent; default the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<crate::model::HeaderValueOption>,
    /// Statuses that pass, as half-open ranges `[start, end)`; default
    /// 200 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<StatusRange>,
    /// HTTP/1.1 (default) or HTTP/2 with prior knowledge.
    #[serde(default, skip_serializing_if = "HealthCheckCodec::is_default")]
    pub codec: HealthCheckCodec,
}

/// HTTP statuses from `start` up to, not including, `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRange {
    pub start: u16,
    pub end: u16,
}

impl StatusRange {
    pub fn contains(&self, status: u16) -> bool {
        (self.start..self.end).contains(&status)
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthCheckCodec {
    #[default]
    Http1,
    Http2,
}

impl HealthCheckCodec {
    pub fn is_default(&self) -> bool {
        *self == HealthCheckCodec::Http1
    }
}

/// A TCP check. Without payloads it passes when the connection is made
/// (and closes it). With them, `send` is written and the check passes when
/// every `receive` payload has arrived, in order (other bytes may come
/// between them).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Payload>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receive: Vec<Payload>,
}

/// Bytes for a TCP check, exactly one of `text` (the text's UTF-8 bytes,
/// `{ text: "PING\r\n" }`) or `hex` (`{ hex: "50494e470d0a" }`). Beware:
/// Envoy's `Payload.text` is hex, so it is Legate's `hex`; Envoy's `binary`
/// is Legate's `text` (or `hex`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
}

impl Payload {
    pub fn text(t: &str) -> Payload {
        Payload {
            text: Some(t.into()),
            hex: None,
        }
    }

    pub fn hex(h: &str) -> Payload {
        Payload {
            text: None,
            hex: Some(h.into()),
        }
    }

    /// The payload's bytes; an error comes with the field at fault (empty
    /// for the payload as a whole).
    pub fn bytes(&self) -> Result<Vec<u8>, (&'static str, String)> {
        match (&self.text, &self.hex) {
            (Some(t), None) => Ok(t.as_bytes().to_vec()),
            (None, Some(h)) => decode_hex(h).map_err(|m| ("hex", m)),
            _ => Err(("", "set exactly one of `text` or `hex`".into())),
        }
    }
}

fn decode_hex(h: &str) -> Result<Vec<u8>, String> {
    if !h.len().is_multiple_of(2) {
        return Err("must have an even number of hex digits".into());
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    h.as_bytes()
        .chunks(2)
        .map(|pair| match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(format!(
                "{:?} is not a hex byte",
                String::from_utf8_lossy(pair)
            )),
        })
        .collect()
}

/// A gRPC check: `grpc.health.v1.Health/Check` over HTTP/2 (whatever the
/// cluster's protocol); it passes when the answer is SERVING with
/// grpc-status 0.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcHealthCheck {
    /// The service asked about (empty: the server as a whole).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_name: String,
    /// The `:authority` sent; default the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// The checker of a [`HealthCheck`], borrowed.
#[derive(Clone, Copy, Debug)]
pub enum Checker<'a> {
    Http(&'a HttpHealthCheck),
    Tcp(&'a TcpHealthCheck),
    Grpc(&'a GrpcHealthCheck),
}

fn is_zero(d: &Dur) -> bool {
    d.is_zero()
}
fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}
fn is_true(b: &bool) -> bool {
    *b
}
fn yes() -> bool {
    true
}
fn default_unhealthy_threshold() -> u32 {
    3
}
fn default_healthy_threshold() -> u32 {
    2
}

impl HealthCheck {
    /// The checker, when exactly one is set.
    pub fn checker(&self) -> Option<Checker<'_>> {
        match (&self.http, &self.tcp, &self.grpc) {
            (Some(h), None, None) => Some(Checker::Http(h)),
            (None, Some(t), None) => Some(Checker::Tcp(t)),
            (None, None, Some(g)) => Some(Checker::Grpc(g)),
            _ => None,
        }
    }

    /// Envoy's `unhealthy_interval`, with its default.
    pub fn unhealthy_interval(&self) -> Dur {
        self.unhealthy_interval.unwrap_or(self.interval)
    }

    /// Envoy's `unhealthy_edge_interval`, with its default.
    pub fn unhealthy_edge_interval(&self) -> Dur {
        self.unhealthy_edge_interval
            .unwrap_or_else(|| self.unhealthy_interval())
    }

    /// Envoy's `healthy_edge_interval`, with its default.
    pub fn healthy_edge_interval(&self) -> Dur {
        self.healthy_edge_interval.unwrap_or(self.interval)
    }

    /// What is wrong with this check, each problem with the path of its
    /// field relative to the check (`interval`, `http.path`, ...; empty for
    /// the check as a whole).
    pub fn problems(&self) -> Vec<FieldError> {
        let mut out = Vec::new();
        let mut push = |path: String, message: String| out.push(FieldError { path, message });
        for (name, d) in [("timeout", self.timeout), ("interval", self.interval)] {
            if d.is_zero() {
                push(name.into(), "must be greater than 0".into());
            }
        }
        let optional = [
            ("unhealthy_interval", self.unhealthy_interval),
            ("unhealthy_edge_interval", self.unhealthy_edge_interval),
            ("healthy_edge_interval", self.healthy_edge_interval),
        ];
        for (name, d) in optional {
            if d.is_some_and(Dur::is_zero) {
                push(
                    name.into(),
                    "must be greater than 0 (leave it out for the default)".into(),
                );
            }
        }
        for (name, n) in [
            ("unhealthy_threshold", self.unhealthy_threshold),
            ("healthy_threshold", self.healthy_threshold),
        ] {
            if n == 0 {
                push(name.into(), "must be at least 1".into());
            }
        }
        match self.checker() {
            None => push(
                String::new(),
                "set exactly one of `http`, `tcp` or `grpc`".into(),
            ),
            Some(Checker::Http(h)) => {
                if !h.path.starts_with('/') || !h.path.bytes().all(|b| b.is_ascii_graphic()) {
                    push(
                        "http.path".into(),
                        format!(
                            "invalid path {:?}: must start with `/` and have no spaces or control characters",
                            h.path
                        ),
                    );
                }
                if let Some(host) = &h.host
                    && let Err(m) = check_authority(host)
                {
                    push("http.host".into(), m);
                }
                for (i, a) in h.request_headers_to_add.iter().enumerate() {
                    let ap = format!("http.request_headers_to_add[{i}]");
                    if let Err(m) = check_header_name(&a.name) {
                        push(format!("{ap}.name"), m);
                    } else if a.name.eq_ignore_ascii_case("host") {
                        push(
                            format!("{ap}.name"),
                            "set the check's `host` instead".into(),
                        );
                    }
                    if let Err(m) = check_header_value(&a.value) {
                        push(format!("{ap}.value"), m);
                    }
                }
                for (i, r) in h.expected_statuses.iter().enumerate() {
                    let rp = format!("http.expected_statuses[{i}]");
                    if r.start < 100 {
                        push(format!("{rp}.start"), "must be at least 100".into());
                    }
                    if r.end > 600 {
                        push(
                            format!("{rp}.end"),
                            "must be at most 600 (the range excludes its end)".into(),
                        );
                    }
                    if r.end <= r.start {
                        push(
                            format!("{rp}.end"),
                            format!(
                                "must be greater than start ({}): the range is [start, end)",
                                r.start
                            ),
                        );
                    }
                }
            }
            Some(Checker::Tcp(t)) => {
                let payloads = t.send.iter().map(|p| ("tcp.send".to_string(), p)).chain(
                    t.receive
                        .iter()
                        .enumerate()
                        .map(|(i, p)| (format!("tcp.receive[{i}]"), p)),
                );
                for (pp, p) in payloads {
                    match p.bytes() {
                        Ok(b) if b.is_empty() => {
                            let field = if p.text.is_some() { "text" } else { "hex" };
                            push(format!("{pp}.{field}"), "must not be empty".into());
                        }
                        Ok(_) => {}
                        Err(("", m)) => push(pp, m),
                        Err((field, m)) => push(format!("{pp}.{field}"), m),
                    }
                }
            }
            Some(Checker::Grpc(g)) => {
                if let Some(a) = &g.authority
                    && let Err(m) = check_authority(a)
                {
                    push("grpc.authority".into(), m);
                }
            }
        }
        out
    }
}

/// A host to send (as `Host` or `:authority`): not empty, and a valid
/// header value without spaces.
fn check_authority(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("must not be empty (leave it out for the cluster's name)".into());
    }
    if !host.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "invalid host {host:?}: no spaces, control or non-ASCII characters"
        ));
    }
    Ok(())
}

/// The problems of a cluster's health checks, at full paths under the
/// cluster's path `p` (`clusters[0].health_checks[1].interval`).
pub fn validate_health_checks(p: &str, checks: &[HealthCheck]) -> Vec<FieldError> {
    let mut out = Vec::new();
    for (k, hc) in checks.iter().enumerate() {
        for e in hc.problems() {
            let base = format!("{p}.health_checks[{k}]");
            let path = if e.path.is_empty() {
                base
            } else {
                format!("{base}.{}", e.path)
            };
            out.push(FieldError {
                path,
                message: e.message,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> HealthCheck {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn reads_naturally_with_envoys_defaults() {
        let hc = parse(
            r#"
timeout: 1s
interval: 5s
http: { path: /healthz }
"#,
        );
        assert_eq!(hc.unhealthy_threshold, 3);
        assert_eq!(hc.healthy_threshold, 2);
        assert!(hc.reuse_connection);
        assert_eq!(hc.unhealthy_edge_interval(), Dur::from_secs(5));
        assert!(hc.problems().is_empty(), "{:?}", hc.problems());
        let Some(Checker::Http(h)) = hc.checker() else {
            panic!("not http")
        };
        assert_eq!(h.codec, HealthCheckCodec::Http1);
        // Serialized back without the empty and default-off fields.
        let text = serde_yaml_ng::to_string(&hc).unwrap();
        assert!(
            !text.contains("jitter") && !text.contains("reuse"),
            "{text}"
        );
        assert_eq!(parse(&text), hc);

        let tcp = parse(
            r#"
timeout: 1s
interval: 5s
unhealthy_interval: 10s
tcp: { send: { text: "PING\r\n" }, receive: [{ hex: "2b504f4e47" }] }
"#,
        );
        assert_eq!(tcp.unhealthy_edge_interval(), Dur::from_secs(10));
        let t = tcp.tcp.as_ref().unwrap();
        assert_eq!(t.receive[0].bytes().unwrap(), b"+PONG");
        assert_eq!(t.send.as_ref().unwrap().bytes().unwrap(), b"PING\r\n");
    }

    #[test]
    fn every_problem_names_its_field() {
        let hc = parse(
            r#"
timeout: 0s
interval: 1s
healthy_threshold: 0
healthy_edge_interval: 0s
http:
  path: healthz
  host: ""
  request_headers_to_add: [{ name: host, value: x }, { name: "a b", value: "\u0001" }]
  expected_statuses: [{ start: 99, end: 601 }, { start: 300, end: 200 }]
"#,
        );
        let got: Vec<String> = hc.problems().iter().map(|e| e.path.clone()).collect();
        assert_eq!(
            got,
            [
                "timeout",
                "healthy_edge_interval",
                "healthy_threshold",
                "http.path",
                "http.host",
                "http.request_headers_to_add[0].name",
                "http.request_headers_to_add[1].name",
                "http.request_headers_to_add[1].value",
                "http.expected_statuses[0].start",
                "http.expected_statuses[0].end",
                "http.expected_statuses[1].end",
            ]
        );
        let both = parse("{ timeout: 1s, interval: 1s, tcp: {}, grpc: {} }");
        assert_eq!(both.problems()[0].path, "");
        let tcp = parse(
            "{ timeout: 1s, interval: 1s, tcp: { send: { hex: abc }, receive: [{ hex: zz }, { text: '' }, {}] } }",
        );
        let got: Vec<String> = tcp.problems().iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            [
                "tcp.send.hex: must have an even number of hex digits",
                "tcp.receive[0].hex: \"zz\" is not a hex byte",
                "tcp.receive[1].text: must not be empty",
                "tcp.receive[2]: set exactly one of `text` or `hex`",
            ]
        );
        let errs = validate_health_checks("clusters[2]", &[both]);
        assert_eq!(errs[0].path, "clusters[2].health_checks[0]");
        assert!(
            serde_yaml_ng::from_str::<HealthCheck>(
                "{ timeout: 1s, interval: 1s, tcp: {}, nope: 1 }"
            )
            .is_err()
        );
        assert!(serde_yaml_ng::from_str::<HealthCheck>("{ interval: 1s, tcp: {} }").is_err());
    }
}
