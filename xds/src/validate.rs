//! Whole-config validation. Every problem is reported with the path of the
//! offending field, e.g. `clusters[2].endpoints[0].address: invalid socket
//! address "10.0.0.1:99999"`; a configuration with any error is refused whole.

use crate::model::*;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;

/// One problem in a configuration, with the path of the field at fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Reports `message` at `path` unless exactly one of `set` is true.
    fn exactly_one(&mut self, path: &str, set: &[bool], message: &str) {
        if set.iter().filter(|b| **b).count() != 1 {
            self.push(path, message);
        }
    }

    /// Reports an invalid regular expression at `path`.
    fn regex(&mut self, path: String, re: &Option<String>) {
        if let Some(re) = re
            && let Err(err) = regex::Regex::new(re)
        {
            self.push(path, format!("invalid regex: {err}"));
        }
    }
}

/// Validates a whole configuration (after [`Listener::normalize`]).
/// Returns every error found; empty means valid.
pub fn validate(config: &Config) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    if config.admin.address.parse::<SocketAddr>().is_err() {
        e.push(
            "admin.address",
            format!("invalid socket address {:?}", config.admin.address),
        );
    }

    if let Some(d) = &config.dynamic {
        validate_dynamic(&mut e, d);
    }
    // With a control plane, references may name resources it delivers
    // later (Envoy answers 503 for a cluster that does not exist).
    let dynamic = config.dynamic.is_some();

    let mut cluster_names = HashSet::new();
    for (i, c) in config.clusters.iter().enumerate() {
        let p = format!("clusters[{i}]");
        validate_cluster(&mut e, &p, c, dynamic);
        if !c.name.is_empty() && !cluster_names.insert(c.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate cluster name {:?}", c.name),
            );
        }
    }

    let clusters = (!dynamic).then_some(&cluster_names);

    let mut route_config_names = HashSet::new();
    for (i, rc) in config.route_configs.iter().enumerate() {
        let p = format!("route_configs[{i}]");
        if rc.name.is_empty() {
            e.push(format!("{p}.name"), "must not be empty");
        } else if !route_config_names.insert(rc.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate route configuration name {:?}", rc.name),
            );
        }
        validate_route_config(&mut e, &p, rc, clusters);
    }
    let route_configs = (!dynamic).then_some(&route_config_names);

    let mut listener_names = HashSet::new();
    let mut addresses: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, l) in config.listeners.iter().enumerate() {
        let p = format!("listeners[{i}]");
        if l.name.is_empty() {
            e.push(format!("{p}.name"), "must not be empty");
        } else if !listener_names.insert(l.name.as_str()) {
            e.push(
                format!("{p}.name"),
                format!("duplicate listener name {:?}", l.name),
            );
        }
        match l.address.parse::<SocketAddr>() {
            Ok(addr) => {
                if addr.port() != 0
                    && let Some(other) = addresses.insert(addr, i)
                {
                    e.push(
                        format!("{p}.address"),
                        format!("{addr} is already used by listeners[{other}]"),
                    );
                }
            }
            Err(_) => e.push(
                format!("{p}.address"),
                format!("invalid socket address {:?}", l.address),
            ),
        }
        if l.http.is_some() || l.tcp.is_some() {
            e.push(p.to_string(), "internal: listener not normalized");
        }
        if l.filter_chains.is_empty() && !l.use_original_dst {
            e.push(
                format!("{p}.filter_chains"),
                "a listener needs at least one filter chain (or `http:`/`tcp:`)",
            );
        }
        if l.use_original_dst && !l.bind_to_port {
            e.push(
                format!("{p}.bind_to_port"),
                "a `use_original_dst` listener must bind its port (it is where iptables sends connections)",
            );
        }
        if l.outbound_traffic_policy.is_some() && !l.use_original_dst {
            e.push(
                format!("{p}.outbound_traffic_policy"),
                "only applies to a `use_original_dst` listener",
            );
        }
        let mut seen_any = false;
        for (j, fc) in l.filter_chains.iter().enumerate() {
            let fp = format!("{p}.filter_chains[{j}]");
            if seen_any {
                e.push(
                    fp.clone(),
                    "unreachable: an earlier filter chain without `match` takes every connection",
                );
            }
            if fc.filter_chain_match.is_any() {
                seen_any = true;
            }
            match (&fc.http, &fc.tcp) {
                (Some(h), None) => {
                    validate_hcm(&mut e, &format!("{fp}.http"), h, clusters, route_configs)
                }
                (None, Some(t)) => {
                    if clusters.is_some_and(|k| !k.contains(t.cluster.as_str())) {
                        e.push(
                            format!("{fp}.tcp.cluster"),
                            format!("unknown cluster {:?}", t.cluster),
                        );
                    }
                }
                (Some(_), Some(_)) => e.push(fp, "set exactly one of `http` or `tcp`, not both"),
                (None, None) => e.push(fp, "set exactly one of `http` or `tcp`"),
            }
        }
    }
    e.0
}

fn validate_dynamic(e: &mut Errors, d: &Dynamic) {
    if d.servers.is_empty() {
        e.push("dynamic.servers", "list at least one control plane address");
    }
    for (i, s) in d.servers.iter().enumerate() {
        if let Err(m) = check_host_port(s) {
            e.push(format!("dynamic.servers[{i}]"), m);
        }
    }
    if d.node.id.is_empty() {
        e.push("dynamic.node.id", "must not be empty");
    }
}

fn validate_cluster(e: &mut Errors, p: &str, c: &Cluster, dynamic: bool) {
    if c.name.is_empty() {
        e.push(format!("{p}.name"), "must not be empty");
    }
    if c.discovery == DiscoveryType::Eds && !dynamic {
        e.push(
            format!("{p}.type"),
            "`eds` clusters get their endpoints from a control plane: add a `dynamic` section",
        );
    }
    if c.eds_service_name.is_some() && c.discovery != DiscoveryType::Eds {
        e.push(
            format!("{p}.eds_service_name"),
            "only `eds` clusters have an EDS service name",
        );
    }
    if c.connect_timeout.is_zero() {
        e.push(format!("{p}.connect_timeout"), "must be greater than 0");
    }
    if c.discovery == DiscoveryType::StrictDns && c.dns_refresh_rate.get().as_millis() < 1 {
        e.push(format!("{p}.dns_refresh_rate"), "must be at least 1ms");
    }
    if c.http2_max_concurrent_streams == 0 {
        e.push(
            format!("{p}.http2_max_concurrent_streams"),
            "must be at least 1",
        );
    }
    if !(1..=8_388_608).contains(&c.ring_size) {
        e.push(format!("{p}.ring_size"), "must be between 1 and 8388608");
    }
    if !(0.0..=100.0).contains(&c.healthy_panic_threshold) {
        e.push(
            format!("{p}.healthy_panic_threshold"),
            "must be a percentage between 0 and 100",
        );
    }
    for prio in crate::model::RoutingPriority::ALL {
        let t = c.circuit_breakers.get(prio);
        let tp = format!("{p}.circuit_breakers.{}", prio.as_str());
        if t.max_retries.is_some() && t.retry_budget.is_some() {
            e.push(
                format!("{tp}.retry_budget"),
                "set either max_retries or retry_budget, not both",
            );
        }
        if let Some(b) = &t.retry_budget
            && !(0.0..=100.0).contains(&b.budget_percent)
        {
            e.push(
                format!("{tp}.retry_budget.budget_percent"),
                "must be a percentage between 0 and 100",
            );
        }
    }
    if let Some(o) = &c.outlier_detection {
        let op = format!("{p}.outlier_detection");
        if o.interval.is_zero() {
            e.push(format!("{op}.interval"), "must be greater than 0");
        }
        if o.base_ejection_time.is_zero() {
            e.push(format!("{op}.base_ejection_time"), "must be greater than 0");
        }
        let percents = [
            ("max_ejection_percent", o.max_ejection_percent),
            ("enforcing_consecutive_5xx", o.enforcing_consecutive_5xx),
            (
                "enforcing_consecutive_gateway_failure",
                o.enforcing_consecutive_gateway_failure,
            ),
            (
                "enforcing_consecutive_local_origin_failure",
                o.enforcing_consecutive_local_origin_failure,
            ),
            ("enforcing_success_rate", o.enforcing_success_rate),
            (
                "enforcing_local_origin_success_rate",
                o.enforcing_local_origin_success_rate,
            ),
            (
                "enforcing_failure_percentage",
                o.enforcing_failure_percentage,
            ),
            (
                "enforcing_failure_percentage_local_origin",
                o.enforcing_failure_percentage_local_origin,
            ),
            (
                "failure_percentage_threshold",
                o.failure_percentage_threshold,
            ),
        ];
        for (name, v) in percents {
            if v > 100 {
                e.push(
                    format!("{op}.{name}"),
                    "must be a percentage between 0 and 100",
                );
            }
        }
    }
    for (j, ep) in c.endpoints.iter().enumerate() {
        let ap = format!("{p}.endpoints[{j}].address");
        match c.discovery {
            DiscoveryType::Static | DiscoveryType::Eds => {
                if ep.address.parse::<SocketAddr>().is_err() {
                    e.push(ap, format!("invalid socket address {:?}", ep.address));
                }
            }
            DiscoveryType::StrictDns => {
                if let Err(m) = check_host_port(&ep.address) {
                    e.push(ap, m);
                }
            }
        }
        if ep.weight == 0 {
            e.push(format!("{p}.endpoints[{j}].weight"), "must be at least 1");
        }
    }
    e.0.extend(validate_health_checks(p, &c.health_checks));
}

fn check_host_port(s: &str) -> Result<(), String> {
    if s.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("invalid address {s:?}: expected host:port"));
    };
    if port.parse::<u16>().is_err() {
        return Err(format!("invalid address {s:?}: invalid port {port:?}"));
    }
    let ok_host = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok_host {
        return Err(format!("invalid address {s:?}: invalid host name {host:?}"));
    }
    Ok(())
}

fn validate_hcm(
    e: &mut Errors,
    p: &str,
    h: &HttpConnectionManager,
    clusters: Option<&HashSet<&str>>,
    route_configs: Option<&HashSet<&str>>,
) {
    if !(8..=8192).contains(&h.max_request_headers_kb) {
        e.push(
            format!("{p}.max_request_headers_kb"),
            "must be between 8 and 8192",
        );
    }
    if !(1..=10_000).contains(&h.max_request_headers_count) {
        e.push(
            format!("{p}.max_request_headers_count"),
            "must be between 1 and 10000",
        );
    }
    if h.http2_max_concurrent_streams == 0 {
        e.push(
            format!("{p}.http2_max_concurrent_streams"),
            "must be at least 1",
        );
    }
    match (&h.route_config, &h.rds) {
        (Some(rc), None) => validate_route_config(e, &format!("{p}.route_config"), rc, clusters),
        (None, Some(name)) => {
            if name.is_empty() {
                e.push(format!("{p}.rds"), "must not be empty");
            } else if let Some(known) = route_configs
                && !known.contains(name.as_str())
            {
                e.push(
                    format!("{p}.rds"),
                    format!("unknown route configuration {name:?} (define it in `route_configs`)"),
                );
            }
        }
        (Some(_), Some(_)) => e.push(p, "set `route_config` or `rds`, not both"),
        (None, None) => e.push(p, "set `route_config` (inline routes) or `rds`"),
    }
}

/// Validates one route table. `clusters` is `None` when references to
/// clusters the control plane may still deliver are allowed.
fn validate_route_config(
    e: &mut Errors,
    rp: &str,
    rc: &RouteConfiguration,
    clusters: Option<&HashSet<&str>>,
) {
    let mut domains: HashMap<String, usize> = HashMap::new();
    for (i, vh) in rc.virtual_hosts.iter().enumerate() {
        let vp = format!("{rp}.virtual_hosts[{i}]");
        if let Some(l) = &vh.rate_limit {
            validate_rate_limit(e, &format!("{vp}.rate_limit"), l);
        }
        if let Some(r) = &vh.retry {
            validate_retry(e, &format!("{vp}.retry"), r);
        }
        if vh.domains.is_empty() {
            e.push(
                format!("{vp}.domains"),
                "must list at least one domain (use \"*\" for any)",
            );
        }
        for (j, d) in vh.domains.iter().enumerate() {
            let dp = format!("{vp}.domains[{j}]");
            if let Err(m) = check_domain(d) {
                e.push(dp.clone(), m);
            }
            if let Some(other) = domains.insert(d.to_ascii_lowercase(), i) {
                e.push(
                    dp,
                    format!("domain {d:?} is already used by virtual_hosts[{other}]"),
                );
            }
        }
        check_mutation(
            e,
            &format!("{vp}.request_headers"),
            &vh.request_headers,
            true,
        );
        check_mutation(
            e,
            &format!("{vp}.response_headers"),
            &vh.response_headers,
            false,
        );
        for (j, r) in vh.routes.iter().enumerate() {
            validate_route(e, &format!("{vp}.routes[{j}]"), r, clusters);
        }
    }
}

fn check_domain(d: &str) -> Result<(), String> {
    if d == "*" {
        return Ok(());
    }
    if d.is_empty() {
        return Err("must not be empty".into());
    }
    let body = d
        .strip_prefix('*')
        .or_else(|| d.strip_suffix('*'))
        .unwrap_or(d);
    if body.is_empty() || body.contains('*') {
        return Err(format!(
            "invalid domain {d:?}: a wildcard may only be the first or last character"
        ));
    }
    if !body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']'))
    {
        return Err(format!("invalid domain {d:?}"));
    }
    Ok(())
}

/// The problems of a fault injection config at `path` (also used by the
/// control plane's mesh description).
pub fn fault_errors(path: &str, f: &FaultInjection) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    validate_fault(&mut e, path, f);
    e.0
}

fn validate_fault(e: &mut Errors, p: &str, f: &FaultInjection) {
    if f.delay.is_none() && f.abort.is_none() {
        e.push(p, "set `delay`, `abort` or both");
    }
    if let Some(d) = &f.delay {
        let dp = format!("{p}.delay");
        e.exactly_one(
            &dp,
            &[d.fixed.is_some(), d.from_header],
            "set exactly one of `fixed` and `from_header: true`",
        );
        if d.fixed.is_some_and(|t| t.is_zero()) {
            e.push(format!("{dp}.fixed"), "must be more than 0s");
        }
    }
    if let Some(a) = &f.abort {
        let ap = format!("{p}.abort");
        e.exactly_one(
            &ap,
            &[
                a.http_status.is_some(),
                a.grpc_status.is_some(),
                a.from_header,
            ],
            "set exactly one of `http_status`, `grpc_status` and `from_header: true`",
        );
        if let Some(st) = a.http_status
            && !(200..600).contains(&st)
        {
            e.push(
                format!("{ap}.http_status"),
                format!("{st} is not between 200 and 599"),
            );
        }
        if let Some(st) = a.grpc_status
            && st > 16
        {
            e.push(
                format!("{ap}.grpc_status"),
                format!("{st} is not a gRPC status (0-16)"),
            );
        }
    }
}

/// The problems of a retry policy at `path` (also used by the control
/// plane's mesh description).
pub fn retry_errors(path: &str, r: &RetryPolicy) -> Vec<FieldError> {
    let mut e = Errors(Vec::new());
    validate_retry(&mut e, path, r);
    e.0
}

fn validate_retry(e: &mut Errors, p: &str, r: &RetryPolicy) {
    if r.retry_on.is_empty() {
        e.push(
            format!("{p}.retry_on"),
            "name at least one condition (5xx, reset, connect-failure, ...)",
        );
    }
    let codes = r.retry_on.contains(&RetryOn::RetriableStatusCodes);
    if codes && r.retriable_status_codes.is_empty() {
        e.push(
            format!("{p}.retriable_status_codes"),
            "retriable-status-codes needs the codes",
        );
    }
    for (i, c) in r.retriable_status_codes.iter().enumerate() {
        if !(100..600).contains(c) {
            e.push(
                format!("{p}.retriable_status_codes[{i}]"),
                format!("{c} is not an HTTP status"),
            );
        }
    }
    if r.backoff_base.is_zero() {
        e.push(format!("{p}.backoff_base"), "must be more than 0s");
    }
    if let Some(max) = r.backoff_max
        && max < r.backoff_base
    {
        e.push(
            format!("{p}.backoff_max"),
            "must not be less than backoff_base",
        );
    }
    if r.per_try_timeout.is_some_and(|t| t.is_zero()) {
        e.push(
            format!("{p}.per_try_timeout"),
            "must be more than 0s (leave it out for none)",
        );
    }
}

fn validate_rate_limit(e: &mut Errors, p: &str, l: &LocalRateLimit) {
    if l.fill_interval < crate::duration::Dur::from_millis(50) {
        e.push(format!("{p}.fill_interval"), "must be at least 50ms");
    }
    if l.tokens_per_fill == 0 {
        e.push(format!("{p}.tokens_per_fill"), "must be at least 1");
    }
    if !(400..600).contains(&l.status) {
        e.push(
            format!("{p}.status"),
            format!("{} is not between 400 and 599", l.status),
        );
    }
    for (field, list) in [
        ("response_headers", &l.response_headers),
        (
            "request_headers_when_not_enforced",
            &l.request_headers_when_not_enforced,
        ),
    ] {
        for (i, h) in list.iter().enumerate() {
            if let Err(msg) = check_header_name(&h.name).and_then(|_| check_header_value(&h.value))
            {
                e.push(format!("{p}.{field}[{i}]"), msg);
            }
        }
    }
}

fn validate_route(e: &mut Errors, p: &str, r: &Route, clusters: Option<&HashSet<&str>>) {
    if let Some(f) = &r.fault {
        validate_fault(e, &format!("{p}.fault"), f);
    }
    if let Some(l) = &r.rate_limit {
        validate_rate_limit(e, &format!("{p}.rate_limit"), l);
    }
    if let Some(retry) = r.route.as_ref().and_then(|a| a.retry.as_ref()) {
        validate_retry(e, &format!("{p}.route.retry"), retry);
    }
    let m = &r.route_match;
    let mp = format!("{p}.match");
    e.exactly_one(
        &mp,
        &[m.prefix.is_some(), m.path.is_some(), m.regex.is_some()],
        "set exactly one of `prefix`, `path` or `regex`",
    );
    if let Some(prefix) = &m.prefix
        && !prefix.is_empty()
        && !prefix.starts_with('/')
    {
        e.push(
            format!("{mp}.prefix"),
            format!("{prefix:?} must start with '/'"),
        );
    }
    if let Some(path) = &m.path
        && !path.starts_with('/')
    {
        e.push(
            format!("{mp}.path"),
            format!("{path:?} must start with '/'"),
        );
    }
    e.regex(format!("{mp}.regex"), &m.regex);
    for (i, h) in m.headers.iter().enumerate() {
        let hp = format!("{mp}.headers[{i}]");
        if let Err(msg) = check_header_name(&h.name) {
            e.push(format!("{hp}.name"), msg);
        }
        e.exactly_one(
            &hp,
            &[
                h.exact.is_some(),
                h.prefix.is_some(),
                h.regex.is_some(),
                h.present.is_some(),
            ],
            "set exactly one of `exact`, `prefix`, `regex` or `present`",
        );
        e.regex(format!("{hp}.regex"), &h.regex);
    }
    for (i, q) in m.query_parameters.iter().enumerate() {
        let qp = format!("{mp}.query_parameters[{i}]");
        if q.name.is_empty() {
            e.push(format!("{qp}.name"), "must not be empty");
        }
        e.exactly_one(
            &qp,
            &[q.exact.is_some(), q.regex.is_some(), q.present.is_some()],
            "set exactly one of `exact`, `regex` or `present`",
        );
        e.regex(format!("{qp}.regex"), &q.regex);
    }

    e.exactly_one(
        p,
        &[
            r.route.is_some(),
            r.redirect.is_some(),
            r.direct_response.is_some(),
        ],
        "set exactly one of `route`, `redirect` or `direct_response`",
    );
    check_mutation(e, &format!("{p}.request_headers"), &r.request_headers, true);
    check_mutation(
        e,
        &format!("{p}.response_headers"),
        &r.response_headers,
        false,
    );

    if let Some(a) = &r.route {
        let ap = format!("{p}.route");
        match (&a.cluster, a.weighted_clusters.is_empty()) {
            (Some(c), true) => {
                if clusters.is_some_and(|k| !k.contains(c.as_str())) {
                    e.push(format!("{ap}.cluster"), format!("unknown cluster {c:?}"));
                }
            }
            (None, false) => {
                let mut total: u64 = 0;
                for (i, w) in a.weighted_clusters.iter().enumerate() {
                    if clusters.is_some_and(|k| !k.contains(w.name.as_str())) {
                        e.push(
                            format!("{ap}.weighted_clusters[{i}].name"),
                            format!("unknown cluster {:?}", w.name),
                        );
                    }
                    total += u64::from(w.weight);
                }
                if total == 0 {
                    e.push(
                        format!("{ap}.weighted_clusters"),
                        "weights must not all be 0",
                    );
                } else if total > u64::from(u32::MAX) {
                    e.push(
                        format!("{ap}.weighted_clusters"),
                        "sum of weights overflows 32 bits",
                    );
                }
            }
            (Some(_), false) => {
                e.push(ap.clone(), "set `cluster` or `weighted_clusters`, not both")
            }
            (None, true) => e.push(ap.clone(), "set `cluster` or `weighted_clusters`"),
        }
        if a.prefix_rewrite.as_deref() == Some("") {
            e.push(
                format!("{ap}.prefix_rewrite"),
                "must not be empty (use \"/\" to replace the prefix with a slash)",
            );
        }
        if a.prefix_rewrite.is_some() && a.regex_rewrite.is_some() {
            e.push(
                ap.clone(),
                "set at most one of `prefix_rewrite` or `regex_rewrite`",
            );
        }
        if a.prefix_rewrite.is_some() && m.regex.is_some() {
            e.push(
                format!("{ap}.prefix_rewrite"),
                "needs a `prefix` or `path` match (use `regex_rewrite` with `regex`)",
            );
        }
        if let Some(rr) = &a.regex_rewrite {
            match regex::Regex::new(&rr.pattern) {
                Err(err) => e.push(
                    format!("{ap}.regex_rewrite.pattern"),
                    format!("invalid regex: {err}"),
                ),
                Ok(re) => {
                    // RE2 substitution: `\N` is group N (one digit), `\\` a backslash.
                    let groups = re.captures_len() - 1;
                    let bytes = rr.substitution.as_bytes();
                    let mut i = 0;
                    while i < bytes.len() {
                        if bytes[i] == b'\\' {
                            match bytes.get(i + 1) {
                                Some(d @ b'0'..=b'9') if usize::from(d - b'0') > groups => e.push(
                                    format!("{ap}.regex_rewrite.substitution"),
                                    format!(
                                        "\\{} names a group the pattern does not have ({groups} groups)",
                                        char::from(*d)
                                    ),
                                ),
                                Some(b'0'..=b'9' | b'\\') => {}
                                _ => e.push(
                                    format!("{ap}.regex_rewrite.substitution"),
                                    "a backslash must be followed by a digit or another backslash",
                                ),
                            }
                            i += 2;
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
        if let Some(h) = &a.host_rewrite
            && !is_authority(h)
        {
            e.push(
                format!("{ap}.host_rewrite"),
                format!("invalid host {h:?}: expected host or host:port"),
            );
        }
        for (i, hp) in a.hash_policy.iter().enumerate() {
            let hpp = format!("{ap}.hash_policy[{i}]");
            e.exactly_one(
                &hpp,
                &[hp.header.is_some(), hp.cookie.is_some(), hp.source_ip],
                "set exactly one of `header`, `cookie` or `source_ip: true`",
            );
            if let Some(n) = &hp.header
                && let Err(m) = check_header_name(n)
            {
                e.push(format!("{hpp}.header"), m);
            }
            if let Some(n) = &hp.cookie
                && (n.is_empty() || n.contains([';', '=', ' ']))
            {
                e.push(
                    format!("{hpp}.cookie"),
                    format!("invalid cookie name {n:?}"),
                );
            }
        }
    }
    if let Some(rd) = &r.redirect {
        let rp = format!("{p}.redirect");
        if ![301, 302, 303, 307, 308].contains(&rd.response_code) {
            e.push(
                format!("{rp}.response_code"),
                format!(
                    "{} is not a redirect code (301, 302, 303, 307, 308)",
                    rd.response_code
                ),
            );
        }
        if let Some(s) = &rd.scheme
            && s != "http"
            && s != "https"
        {
            e.push(
                format!("{rp}.scheme"),
                format!("{s:?} must be \"http\" or \"https\""),
            );
        }
        if rd.prefix_rewrite.as_deref() == Some("") {
            e.push(
                format!("{rp}.prefix_rewrite"),
                "must not be empty (use \"/\" to replace the prefix with a slash)",
            );
        }
        if rd.prefix_rewrite.is_some() && m.regex.is_some() {
            e.push(
                format!("{rp}.prefix_rewrite"),
                "needs a `prefix` or `path` match (a regex match has no prefix to replace)",
            );
        }
        if rd.path.is_some() && rd.prefix_rewrite.is_some() {
            e.push(rp.clone(), "set at most one of `path` or `prefix_rewrite`");
        }
        if let Some(path) = &rd.path
            && !path.starts_with('/')
        {
            e.push(
                format!("{rp}.path"),
                format!("{path:?} must start with '/'"),
            );
        }
        if let Some(h) = &rd.host
            && (check_domain(h).is_err() || h.contains('*'))
        {
            e.push(format!("{rp}.host"), format!("invalid host {h:?}"));
        }
    }
    if let Some(d) = &r.direct_response
        && !(200..=599).contains(&d.status)
    {
        e.push(
            format!("{p}.direct_response.status"),
            format!("{} is not between 200 and 599", d.status),
        );
    }
}

fn check_mutation(e: &mut Errors, p: &str, m: &HeaderMutation, request: bool) {
    for (i, h) in m.add.iter().enumerate() {
        if let Err(msg) = check_header_name(&h.name) {
            e.push(format!("{p}.add[{i}].name"), msg);
        } else if request && h.name.eq_ignore_ascii_case("host") {
            e.push(
                format!("{p}.add[{i}].name"),
                "use the route's `host_rewrite` to change the host",
            );
        }
        if let Err(msg) = check_header_value(&h.value) {
            e.push(format!("{p}.add[{i}].value"), msg);
        }
    }
    for (i, n) in m.remove.iter().enumerate() {
        if let Err(msg) = check_header_name(n) {
            e.push(format!("{p}.remove[{i}]"), msg);
        } else if request && n.eq_ignore_ascii_case("host") {
            e.push(
                format!("{p}.remove[{i}]"),
                "the host header cannot be removed",
            );
        }
    }
}

/// `host`, `host:port`, `[v6]:port`: what can stand in `Host`/`:authority`.
fn is_authority(h: &str) -> bool {
    !h.is_empty()
        && h.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':' | b'[' | b']')
        })
}

/// RFC 9110 token characters; pseudo-headers are refused.
pub fn check_header_name(n: &str) -> Result<(), String> {
    if n.is_empty() {
        return Err("header name must not be empty".into());
    }
    if n.starts_with(':') {
        return Err(format!("{n:?}: pseudo-headers cannot be used here"));
    }
    let ok = n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("invalid header name {n:?}"))
    }
}

pub fn check_header_value(v: &str) -> Result<(), String> {
    if v.bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80)
    {
        Ok(())
    } else {
        Err(format!(
            "invalid header value {v:?}: control characters are not allowed"
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::parse_str;

    fn errors(yaml: &str) -> Vec<String> {
        match parse_str(yaml) {
            Ok(_) => vec![],
            Err(e) => e.messages(),
        }
    }

    #[test]
    fn dynamic_rds_and_eds_are_checked() {
        let errs = errors(
            r#"
listeners:
  - name: web
    address: 127.0.0.1:8080
    http: { rds: nowhere }
  - name: both
    address: 127.0.0.1:8081
    http:
      rds: shared
      route_config: { virtual_hosts: [] }
route_configs:
  - name: shared
    virtual_hosts:
      - { name: a, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: gone } }] }
  - name: shared
    virtual_hosts: []
clusters:
  - name: e
    type: eds
    endpoints: [{ address: "127.0.0.1:80", priority: 1, health_status: draining }]
  - name: s
    eds_service_name: x
    endpoints: [{ address: "127.0.0.1:80" }]
"#,
        );
        for want in [
            "listeners[0].filter_chains[0].http.rds: unknown route configuration \"nowhere\"",
            "listeners[1].filter_chains[0].http: set `route_config` or `rds`, not both",
            "route_configs[0].virtual_hosts[0].routes[0].route.cluster: unknown cluster \"gone\"",
            "route_configs[1].name: duplicate route configuration name \"shared\"",
            "clusters[0].type: `eds` clusters get their endpoints from a control plane",
            "clusters[1].eds_service_name: only `eds` clusters",
        ] {
            assert!(
                errs.iter().any(|e| e.starts_with(want)),
                "missing {want:?} in {errs:#?}"
            );
        }
        assert_eq!(errs.len(), 6, "{errs:#?}");

        // With a control plane, names may refer to what it delivers later.
        let errs = errors(
            r#"
dynamic:
  servers: ["xds.local:15010", "bad host:1"]
  node: { id: "" }
  api: delta
listeners:
  - name: web
    address: 127.0.0.1:8080
    http: { rds: later }
route_configs:
  - name: shared
    virtual_hosts:
      - { name: a, domains: ["*"], routes: [{ match: { prefix: / }, route: { cluster: later } }] }
clusters:
  - name: e
    type: eds
"#,
        );
        assert_eq!(
            errs,
            [
                "dynamic.servers[1]: invalid address \"bad host:1\": invalid host name \"bad host\"",
                "dynamic.node.id: must not be empty",
            ],
        );
    }

    #[test]
    fn reports_every_error_with_its_path() {
        let errs = errors(
            r#"
listeners:
  - name: web
    address: 127.0.0.1:99999
    http:
      route_config:
        virtual_hosts:
          - name: a
            domains: ["*"]
            routes:
              - match: { prefix: "/" }
                route: { cluster: missing }
              - match: { prefix: "/x", path: "/y" }
                direct_response: { status: 200 }
clusters:
  - name: one
    endpoints: [{ address: "127.0.0.1:80" }]
  - name: two
    endpoints: [{ address: "127.0.0.1:80" }]
  - name: three
    endpoints: [{ address: "10.0.0.1:99999" }]
"#,
        );
        assert!(
            errs.contains(
                &r#"clusters[2].endpoints[0].address: invalid socket address "10.0.0.1:99999""#
                    .to_string()
            ),
            "{errs:#?}"
        );
        assert!(
            errs.contains(
                &r#"listeners[0].address: invalid socket address "127.0.0.1:99999""#.to_string()
            ),
            "{errs:#?}"
        );
        assert!(
            errs.contains(&r#"listeners[0].filter_chains[0].http.route_config.virtual_hosts[0].routes[0].route.cluster: unknown cluster "missing""#.to_string()),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with("listeners[0].filter_chains[0].http.route_config.virtual_hosts[0].routes[1].match: set exactly one")),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), 4, "{errs:#?}");
    }

    #[test]
    fn syntax_errors_name_the_field() {
        let errs = errors("clusters:\n  - name: a\n    connect_timeout: 5 parsecs\n");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].contains("clusters[0].connect_timeout"), "{errs:?}");
        let errs = errors("clusters:\n  - name: a\n    colour: blue\n");
        assert!(errs[0].contains("unknown field `colour`"), "{errs:?}");
    }

    #[test]
    fn rewrites_and_redirects_are_checked_before_they_can_misbehave() {
        let errs = errors(
            r#"
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      route_config:
        virtual_hosts:
          - name: a
            domains: ["*"]
            routes:
              - match: { regex: "/old/.*" }
                redirect: { prefix_rewrite: /new/ }
              - match: { regex: "/u/([0-9]+)" }
                route: { cluster: c, regex_rewrite: { pattern: "/u/([0-9]+)", substitution: '/x/\2' } }
              - match: { prefix: / }
                route: { cluster: c, host_rewrite: "http://x" }
              - match: { prefix: /ok }
                route: { cluster: c, host_rewrite: "svc.internal:8080", regex_rewrite: { pattern: "(a)", substitution: '\1\\' } }
clusters:
  - name: c
    endpoints: [{ address: "127.0.0.1:80" }]
"#,
        );
        let p = "listeners[0].filter_chains[0].http.route_config.virtual_hosts[0].routes";
        assert!(
            errs.iter().any(|e| e.starts_with(&format!(
                "{p}[0].redirect.prefix_rewrite: needs a `prefix` or `path` match"
            ))),
            "{errs:#?}"
        );
        assert!(
            errs.iter().any(|e| e.starts_with(&format!(
                "{p}[1].route.regex_rewrite.substitution: \\2 names a group"
            ))),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with(&format!("{p}[2].route.host_rewrite: invalid host"))),
            "{errs:#?}"
        );
        assert_eq!(errs.len(), 3, "route 3 is valid: {errs:#?}");
    }

    #[test]
    fn valid_config_parses() {
        let c = crate::parse_str(
            r#"
listeners:
  - name: web
    address: 127.0.0.1:0
    http:
      route_config:
        virtual_hosts:
          - name: a
            domains: ["*.example.com", "*"]
            routes:
              - match: { prefix: "/" }
                route:
                  weighted_clusters: [{ name: one, weight: 80 }, { name: dns, weight: 20 }]
clusters:
  - name: one
    endpoints: [{ address: "127.0.0.1:80" }]
  - name: dns
    type: strict_dns
    endpoints: [{ address: "localhost:80" }]
"#,
        )
        .unwrap();
        assert_eq!(c.listeners[0].filter_chains.len(), 1);
        assert!(c.listeners[0].http.is_none());
    }
}
