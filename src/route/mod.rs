//! Route tables compiled from the model: virtual-host selection by host,
//! ordered route matching, actions, rewrites and header mutations.
//! Everything a request needs (regexes, header names and values, cluster
//! pointers) is prepared here, when configuration changes.

pub mod headers;
mod index;

use crate::cluster::Cluster;
use bytes::Bytes;
use headers::HeaderOps;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use index::{Literal, Lookup, RouteIndex};
use legate_xds::model;
use regex::Regex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Why a model could not be compiled (the validator catches these first;
/// this is the data plane's own guard).
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError {
        path: path.into(),
        message: message.into(),
    }
}

pub struct RouteTable {
    exact: HashMap<Box<str>, usize>,
    /// `*.example.com` stored as `.example.com`, longest first.
    suffixes: Vec<(Box<str>, usize)>,
    /// `example.*` stored as `example.`, longest first.
    prefixes: Vec<(Box<str>, usize)>,
    default: Option<usize>,
    /// Ignore any `:port` in the host when choosing a virtual host.
    strip_port: bool,
    pub virtual_hosts: Vec<VirtualHost>,
}

pub struct VirtualHost {
    pub name: Arc<str>,
    pub routes: Vec<Route>,
    /// Present for large route lists (see `index.rs`).
    index: Option<RouteIndex>,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Send `x-envoy-attempt-count` upstream.
    pub include_attempt_count: bool,
}

pub struct Route {
    pub name: Option<Arc<str>>,
    path: PathMatch,
    case_sensitive: bool,
    headers: Vec<HeaderMatch>,
    query: Vec<QueryMatch>,
    pub action: Action,
    pub request_headers: HeaderOps,
    pub response_headers: HeaderOps,
    /// Fault injection before the route acts.
    pub fault: Option<Arc<crate::filters::fault::Fault>>,
    /// The route's token bucket, or its virtual host's.
    pub rate_limit: Option<Arc<crate::filters::ratelimit::RateLimit>>,
    /// Whether any filter or router layer (rate limit, fault, retries)
    /// applies: worked out once, so other requests pay one check.
    pub layered: bool,
}

enum PathMatch {
    Prefix(Box<str>),
    Exact(Box<str>),
    Regex(Regex),
}

struct HeaderMatch {
    name: HeaderName,
    kind: ValueMatch,
    invert: bool,
}

enum ValueMatch {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Regex),
    Present(bool),
}

struct QueryMatch {
    name: Box<str>,
    kind: ValueMatch,
}

pub enum Action {
    Forward(Forward),
    Redirect(Redirect),
    Direct { status: StatusCode, body: Bytes },
}

/// Where a route sends requests. `None` stands for a cluster the
/// configuration names but does not have (yet): with a control plane that
/// is allowed, and such requests get Envoy's 503 (flag NC).
pub enum Target {
    Single(Option<Arc<Cluster>>),
    /// Clusters with cumulative weights; pick with a random value below `total`.
    Weighted {
        clusters: Vec<(Option<Arc<Cluster>>, u64)>,
        total: u64,
    },
}

pub struct Forward {
    pub target: Target,
    pub rewrite: Option<Rewrite>,
    pub host_rewrite: Option<HeaderValue>,
    pub timeout: Option<Duration>,
    pub hash_policy: Vec<HashInput>,
    /// The route's retry policy, or its virtual host's.
    pub retry: Option<Arc<crate::router::retry::Retry>>,
    /// Whose circuit-breaker limits its requests count against.
    pub priority: legate_xds::model::RoutingPriority,
}

/// One consistent-hashing input, with its header name parsed at config time.
pub enum HashInput {
    Header(HeaderName),
    Cookie(Box<str>),
    SourceIp,
}

pub enum Rewrite {
    Prefix {
        matched_len: usize,
        replacement: Box<str>,
    },
    Regex {
        regex: Regex,
        substitution: Box<str>,
    },
}

pub struct Redirect {
    pub scheme: Option<Box<str>>,
    pub host: Option<Box<str>>,
    pub port: Option<u16>,
    pub path: Option<Box<str>>,
    pub prefix_rewrite: Option<(usize, Box<str>)>,
    pub status: StatusCode,
    pub strip_query: bool,
}

impl Target {
    /// The cluster for one request; `None` when it does not exist.
    pub fn pick(&self) -> Option<&Arc<Cluster>> {
        match self {
            Target::Single(c) => c.as_ref(),
            Target::Weighted { clusters, total } => {
                let r = fastrand::u64(..*total);
                let i = clusters.partition_point(|(_, cum)| *cum <= r);
                clusters.get(i.min(clusters.len() - 1))?.0.as_ref()
            }
        }
    }
}

/// The parts of a request that routing looks at.
pub struct RequestView<'a> {
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

impl RouteTable {
    pub fn compile(
        path: &str,
        rc: &model::RouteConfiguration,
        strip_port: bool,
        clusters: &Clusters<'_>,
    ) -> Result<RouteTable, CompileError> {
        let mut t = RouteTable::empty();
        t.strip_port = strip_port;
        for (i, vh) in rc.virtual_hosts.iter().enumerate() {
            let vp = format!("{path}.virtual_hosts[{i}]");
            for d in &vh.domains {
                let d = d.to_ascii_lowercase();
                if d == "*" {
                    t.default.get_or_insert(i);
                } else if let Some(s) = d.strip_prefix('*') {
                    t.suffixes.push((s.into(), i));
                } else if let Some(p) = d.strip_suffix('*') {
                    t.prefixes.push((p.into(), i));
                } else {
                    t.exact.entry(d.into()).or_insert(i);
                }
            }
            let vh_retry = vh.retry.as_ref().map(crate::router::retry::Retry::compile);
            let vh_limit = vh
                .rate_limit
                .as_ref()
                .map(|l| rate_limit(&format!("{vp}.rate_limit"), l))
                .transpose()?;
            let routes = vh
                .routes
                .iter()
                .enumerate()
                .map(|(j, r)| {
                    let mut route = compile_route(&format!("{vp}.routes[{j}]"), r, clusters)?;
                    if route.rate_limit.is_none() {
                        route.rate_limit = vh_limit.clone();
                    }
                    if let Action::Forward(f) = &mut route.action
                        && f.retry.is_none()
                    {
                        f.retry = vh_retry.clone();
                    }
                    let retries = matches!(&route.action, Action::Forward(f) if f.retry.is_some());
                    route.layered = retries || route.rate_limit.is_some() || route.fault.is_some();
                    Ok(route)
                })
                .collect::<Result<Vec<_>, CompileError>>()?;
            let index = RouteIndex::build(routes.iter().map(Route::literal));
            t.virtual_hosts.push(VirtualHost {
                name: vh.name.as_str().into(),
                routes,
                index,
                request_headers: HeaderOps::compile(
                    &format!("{vp}.request_headers"),
                    &vh.request_headers,
                )?,
                response_headers: HeaderOps::compile(
                    &format!("{vp}.response_headers"),
                    &vh.response_headers,
                )?,
                include_attempt_count: vh.include_attempt_count,
            });
        }
        t.suffixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        t.prefixes.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        Ok(t)
    }

    /// A table without virtual hosts: every request gets 404 (an `rds`
    /// route configuration that has not arrived).
    pub fn empty() -> RouteTable {
        RouteTable {
            exact: HashMap::new(),
            suffixes: Vec::new(),
            prefixes: Vec::new(),
            default: None,
            strip_port: false,
            virtual_hosts: Vec::new(),
        }
    }

    /// Selects the virtual host for `host` (case-insensitive), port included
    /// as sent unless the table strips ports (Envoy's `strip_any_host_port`).
    pub fn virtual_host(&self, host: &str) -> Option<&VirtualHost> {
        let mut buf = [0u8; 256];
        let lower: &str = if host.bytes().any(|b| b.is_ascii_uppercase()) && host.len() <= buf.len()
        {
            let b = &mut buf[..host.len()];
            b.copy_from_slice(host.as_bytes());
            b.make_ascii_lowercase();
            std::str::from_utf8(b).unwrap_or(host)
        } else {
            host
        };
        let host = if self.strip_port {
            strip_port(lower).unwrap_or(lower)
        } else {
            lower
        };
        let idx = self.find_host(host);
        idx.or(self.default).map(|i| &self.virtual_hosts[i])
    }

    fn find_host(&self, host: &str) -> Option<usize> {
        if let Some(&i) = self.exact.get(host) {
            return Some(i);
        }
        for (s, i) in &self.suffixes {
            if host.len() > s.len() && host.ends_with(&**s) {
                return Some(*i);
            }
        }
        for (p, i) in &self.prefixes {
            if host.len() > p.len() && host.starts_with(&**p) {
                return Some(*i);
            }
        }
        None
    }

    /// The first matching route, with its virtual host.
    pub fn route(&self, req: &RequestView<'_>) -> Option<(&VirtualHost, &Route)> {
        let vh = self.virtual_host(req.host)?;
        let r = match &vh.index {
            Some(ix) => match ix.find(req.path, |i| vh.routes[i].matches(req)) {
                Lookup::Found(i) => &vh.routes[i],
                Lookup::NoMatch => return None,
                Lookup::Scan => vh.routes.iter().find(|r| r.matches(req))?,
            },
            None => vh.routes.iter().find(|r| r.matches(req))?,
        };
        Some((vh, r))
    }
}

fn strip_port(host: &str) -> Option<&str> {
    let (h, port) = host.rsplit_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // IPv6 literals keep their brackets: "[::1]:80" -> "[::1]".
    if h.contains(':') && !h.ends_with(']') {
        return None;
    }
    Some(h)
}

impl Route {
    /// How the route index sees this route's path matcher.
    fn literal(&self) -> Literal<'_> {
        match (&self.path, self.case_sensitive) {
            (PathMatch::Prefix(p), true) => Literal::Prefix(p),
            (PathMatch::Exact(p), true) => Literal::Exact(p),
            _ => Literal::Unindexed,
        }
    }

    fn matches(&self, req: &RequestView<'_>) -> bool {
        let path_ok = match &self.path {
            PathMatch::Prefix(p) => {
                if self.case_sensitive {
                    req.path.starts_with(&**p)
                } else {
                    req.path.len() >= p.len()
                        && req.path.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
                }
            }
            PathMatch::Exact(p) => {
                if self.case_sensitive {
                    req.path == &**p
                } else {
                    req.path.eq_ignore_ascii_case(p)
                }
            }
            PathMatch::Regex(re) => re.is_match(req.path),
        };
        if !path_ok {
            return false;
        }
        for h in &self.headers {
            let ok = match &h.kind {
                // Presence is the one matcher an absent header can satisfy.
                ValueMatch::Present(want) => {
                    (req.headers.contains_key(&h.name) == *want) != h.invert
                }
                kind => {
                    let mut values = req.headers.get_all(&h.name).iter().peekable();
                    if values.peek().is_none() {
                        // Envoy: an absent header never matches, inverted or not.
                        false
                    } else {
                        // Each value is tried on its own; any match counts (Envoy >= 1.39).
                        let any = values.any(|v| v.to_str().is_ok_and(|v| kind.matches(v)));
                        any != h.invert
                    }
                }
            };
            if !ok {
                return false;
            }
        }
        for q in &self.query {
            let value = req.query.and_then(|qs| query_param(qs, &q.name));
            let ok = match (&q.kind, value) {
                (ValueMatch::Present(want), v) => v.is_some() == *want,
                (_, None) => false,
                (kind, Some(v)) => kind.matches(v),
            };
            if !ok {
                return false;
            }
        }
        true
    }
}

impl ValueMatch {
    fn matches(&self, v: &str) -> bool {
        match self {
            ValueMatch::Exact(e) => v == &**e,
            ValueMatch::Prefix(p) => v.starts_with(&**p),
            ValueMatch::Regex(re) => re.is_match(v),
            ValueMatch::Present(want) => *want,
        }
    }
}

/// The raw value of query parameter `name` (first occurrence).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// A whole-string regex (Envoy's `safe_regex` must match the full value).
fn full_regex(path: &str, re: &str) -> Result<Regex, CompileError> {
    Regex::new(&format!("^(?:{re})$")).map_err(|e| err(path, format!("invalid regex: {e}")))
}

fn value_match(
    path: &str,
    exact: &Option<String>,
    prefix: Option<&String>,
    re: &Option<String>,
    present: Option<bool>,
) -> Result<ValueMatch, CompileError> {
    if let Some(e) = exact {
        return Ok(ValueMatch::Exact(e.as_str().into()));
    }
    if let Some(p) = prefix {
        return Ok(ValueMatch::Prefix(p.as_str().into()));
    }
    if let Some(r) = re {
        return Ok(ValueMatch::Regex(full_regex(&format!("{path}.regex"), r)?));
    }
    Ok(ValueMatch::Present(present.unwrap_or(true)))
}

/// The clusters routes may name. With `allow_missing` (a control plane
/// may deliver them later) an unknown name compiles to a target that
/// answers 503; without it, it is an error.
pub struct Clusters<'a> {
    pub map: &'a HashMap<String, Arc<Cluster>>,
    pub allow_missing: bool,
}

impl Clusters<'_> {
    pub fn get(&self, name: &str, path: String) -> Result<Option<Arc<Cluster>>, CompileError> {
        match self.map.get(name) {
            Some(c) => Ok(Some(c.clone())),
            None if self.allow_missing => Ok(None),
            None => Err(err(path, format!("unknown cluster {name:?}"))),
        }
    }
}

fn compile_route(
    p: &str,
    r: &model::Route,
    clusters: &Clusters<'_>,
) -> Result<Route, CompileError> {
    let m = &r.route_match;
    let path = if let Some(prefix) = &m.prefix {
        PathMatch::Prefix(prefix.as_str().into())
    } else if let Some(exact) = &m.path {
        PathMatch::Exact(exact.as_str().into())
    } else if let Some(re) = &m.regex {
        // As in Envoy, `case_sensitive` does not apply to regexes: write `(?i)`.
        PathMatch::Regex(full_regex(&format!("{p}.match.regex"), re)?)
    } else {
        return Err(err(
            format!("{p}.match"),
            "set exactly one of `prefix`, `path` or `regex`",
        ));
    };
    let headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let hp = format!("{p}.match.headers[{i}]");
            Ok(HeaderMatch {
                name: HeaderName::from_bytes(h.name.to_ascii_lowercase().as_bytes())
                    .map_err(|_| err(format!("{hp}.name"), "invalid header name"))?,
                kind: value_match(&hp, &h.exact, h.prefix.as_ref(), &h.regex, h.present)?,
                invert: h.invert,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;
    let query = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let qp = format!("{p}.match.query_parameters[{i}]");
            Ok(QueryMatch {
                name: q.name.as_str().into(),
                kind: value_match(&qp, &q.exact, None, &q.regex, q.present)?,
            })
        })
        .collect::<Result<Vec<_>, CompileError>>()?;

    let matched_len = m.prefix.as_ref().or(m.path.as_ref()).map_or(0, |s| s.len());
    let action = if let Some(a) = &r.route {
        let ap = format!("{p}.route");
        let lookup = |name: &str, fp: String| clusters.get(name, fp);
        let target = if let Some(c) = &a.cluster {
            Target::Single(lookup(c, format!("{ap}.cluster"))?)
        } else {
            let mut acc = 0u64;
            let mut list = Vec::new();
            for (i, w) in a.weighted_clusters.iter().enumerate() {
                let c = lookup(&w.name, format!("{ap}.weighted_clusters[{i}].name"))?;
                if w.weight > 0 {
                    acc += u64::from(w.weight);
                    list.push((c, acc));
                }
            }
            if acc == 0 {
                return Err(err(
                    format!("{ap}.weighted_clusters"),
                    "weights must not all be 0",
                ));
            }
            Target::Weighted {
                clusters: list,
                total: acc,
            }
        };
        let rewrite = if let Some(pr) = &a.prefix_rewrite {
            Some(Rewrite::Prefix {
                matched_len,
                replacement: pr.as_str().into(),
            })
        } else if let Some(rr) = &a.regex_rewrite {
            Some(Rewrite::Regex {
                regex: Regex::new(&rr.pattern).map_err(|e| {
                    err(
                        format!("{ap}.regex_rewrite.pattern"),
                        format!("invalid regex: {e}"),
                    )
                })?,
                substitution: envoy_substitution(&rr.substitution).into(),
            })
        } else {
            None
        };
        let host_rewrite = match &a.host_rewrite {
            Some(h) => Some(
                HeaderValue::from_str(h)
                    .map_err(|_| err(format!("{ap}.host_rewrite"), "invalid host"))?,
            ),
            None => None,
        };
        Action::Forward(Forward {
            target,
            rewrite,
            host_rewrite,
            timeout: (!a.timeout.is_zero()).then(|| a.timeout.get()),
            retry: a.retry.as_ref().map(crate::router::retry::Retry::compile),
            priority: a.priority,
            hash_policy: a
                .hash_policy
                .iter()
                .enumerate()
                .map(|(i, hp)| {
                    if let Some(h) = &hp.header {
                        HeaderName::from_bytes(h.to_ascii_lowercase().as_bytes())
                            .map(HashInput::Header)
                            .map_err(|_| {
                                err(
                                    format!("{ap}.hash_policy[{i}].header"),
                                    "invalid header name",
                                )
                            })
                    } else if let Some(c) = &hp.cookie {
                        Ok(HashInput::Cookie(c.as_str().into()))
                    } else {
                        Ok(HashInput::SourceIp)
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        })
    } else if let Some(rd) = &r.redirect {
        Action::Redirect(Redirect {
            scheme: rd.scheme.as_deref().map(Into::into),
            host: rd.host.as_deref().map(Into::into),
            port: rd.port,
            path: rd.path.as_deref().map(Into::into),
            prefix_rewrite: rd
                .prefix_rewrite
                .as_deref()
                .map(|s| (matched_len, s.into())),
            status: StatusCode::from_u16(rd.response_code)
                .map_err(|_| err(format!("{p}.redirect.response_code"), "invalid status"))?,
            strip_query: rd.strip_query,
        })
    } else if let Some(d) = &r.direct_response {
        Action::Direct {
            status: StatusCode::from_u16(d.status)
                .map_err(|_| err(format!("{p}.direct_response.status"), "invalid status"))?,
            body: Bytes::from(d.body.clone().unwrap_or_default()),
        }
    } else {
        return Err(err(
            p,
            "set exactly one of `route`, `redirect` or `direct_response`",
        ));
    };
    Ok(Route {
        name: r.name.as_deref().map(Into::into),
        path,
        case_sensitive: m.case_sensitive,
        headers,
        query,
        action,
        request_headers: HeaderOps::compile(&format!("{p}.request_headers"), &r.request_headers)?,
        response_headers: HeaderOps::compile(
            &format!("{p}.response_headers"),
            &r.response_headers,
        )?,
        fault: r.fault.as_ref().map(crate::filters::fault::Fault::compile),
        rate_limit: r
            .rate_limit
            .as_ref()
            .map(|l| rate_limit(&format!("{p}.rate_limit"), l))
            .transpose()?,
        // Set with the virtual host's fallbacks, in `RouteTable::compile`.
        layered: false,
    })
}

fn rate_limit(
    p: &str,
    l: &model::LocalRateLimit,
) -> Result<Arc<crate::filters::ratelimit::RateLimit>, CompileError> {
    crate::filters::ratelimit::RateLimit::compile(l).map_err(|m| err(p, &m))
}

/// Envoy's substitutions are RE2's: `\N` (one digit) is group N, `\\` is
/// a backslash, everything else (`$` included) is literal. The regex crate
/// writes groups as `${N}` and a literal `$` as `$$`.
fn envoy_substitution(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek().copied() {
                Some(d) if d.is_ascii_digit() => {
                    chars.next();
                    out.push_str("${");
                    out.push(d);
                    out.push('}');
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            '$' => out.push_str("$$"),
            _ => out.push(c),
        }
    }
    out
}

impl Rewrite {
    /// The rewritten path (query not included).
    pub fn apply(&self, path: &str) -> String {
        match self {
            Rewrite::Prefix {
                matched_len,
                replacement,
            } => {
                let rest = path.get(*matched_len..).unwrap_or("");
                // Exactly Envoy's rule: only the matched prefix is replaced, so
                // prefix "/a" with rewrite "/" turns "/a/b" into "//b"; match
                // "/a/" to rewrite to "/b".
                let mut out = String::with_capacity(replacement.len() + rest.len());
                out.push_str(replacement);
                out.push_str(rest);
                if out.is_empty() {
                    out.push('/');
                }
                out
            }
            Rewrite::Regex {
                regex,
                substitution,
            } => regex.replace_all(path, &**substitution).into_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index must choose exactly the route a linear scan chooses.
    #[test]
    fn indexed_lookup_equals_linear_scan() {
        let mut rng = fastrand::Rng::with_seed(7);
        let words = ["/", "/a", "/ab", "/a/", "/b", "/api", "/api/v1", "/API", ""];
        let cluster = Cluster::new(&model::Cluster {
            name: "c".into(),
            ..Default::default()
        });
        let clusters: HashMap<String, Arc<Cluster>> = [("c".to_string(), cluster)].into();
        for round in 0..60 {
            let mut routes = Vec::new();
            for _ in 0..rng.usize(16..60) {
                let w = words[rng.usize(..words.len())].to_string();
                let mut m = model::RouteMatch {
                    case_sensitive: rng.u8(..10) > 1,
                    ..Default::default()
                };
                match rng.u8(..4) {
                    0 if w.starts_with('/') => m.path = Some(w),
                    1 => m.regex = Some(format!("{}.*", regex::escape(&w))),
                    _ => m.prefix = Some(w),
                }
                if m.path.is_none() && m.regex.is_none() && m.prefix.is_none() {
                    m.prefix = Some("/".into());
                }
                if rng.u8(..5) == 0 {
                    m.headers.push(model::HeaderMatcher {
                        name: "x-h".into(),
                        present: Some(true),
                        ..Default::default()
                    });
                }
                routes.push(model::Route {
                    route_match: m,
                    direct_response: Some(model::DirectResponse {
                        status: 200,
                        body: None,
                    }),
                    ..Default::default()
                });
            }
            let rc = model::RouteConfiguration {
                name: String::new(),
                virtual_hosts: vec![model::VirtualHost {
                    name: "v".into(),
                    domains: vec!["*".into()],
                    routes,
                    ..Default::default()
                }],
            };
            let t = RouteTable::compile(
                "t",
                &rc,
                false,
                &Clusters {
                    map: &clusters,
                    allow_missing: false,
                },
            )
            .unwrap();
            let vh = &t.virtual_hosts[0];
            assert!(vh.index.is_some());
            for path in [
                "/",
                "/a",
                "/ab",
                "/abc",
                "/a/",
                "/a/x",
                "/b",
                "/api",
                "/api/v1",
                "/api/v1/x",
                "/API/v1",
                "/x",
                "",
            ] {
                for with_header in [false, true] {
                    let mut headers = HeaderMap::new();
                    if with_header {
                        headers.insert("x-h", HeaderValue::from_static("1"));
                    }
                    let req = RequestView {
                        host: "h",
                        path,
                        query: None,
                        headers: &headers,
                    };
                    let linear = vh.routes.iter().position(|r| r.matches(&req));
                    let indexed = t
                        .route(&req)
                        .map(|(_, r)| vh.routes.iter().position(|x| std::ptr::eq(x, r)).unwrap());
                    assert_eq!(
                        indexed, linear,
                        "round {round}, path {path:?}, header {with_header}"
                    );
                }
            }
        }
    }

    #[test]
    fn substitution_translates_envoy_groups() {
        // RE2: one digit per group reference; `$` is literal; `\\` is `\`.
        assert_eq!(envoy_substitution(r"/v2/\1/x\12"), "/v2/${1}/x${1}2");
        assert_eq!(envoy_substitution("$1abc"), "$$1abc");
        assert_eq!(envoy_substitution("a$b"), "a$$b");
        assert_eq!(envoy_substitution(r"a\\b"), r"a\b");
    }

    #[test]
    fn strip_port_handles_ipv6() {
        assert_eq!(strip_port("example.com:80"), Some("example.com"));
        assert_eq!(strip_port("[::1]:80"), Some("[::1]"));
        assert_eq!(strip_port("::1"), None);
        assert_eq!(strip_port("example.com"), None);
    }

    #[test]
    fn query_param_finds_values() {
        assert_eq!(query_param("a=1&b=2", "b"), Some("2"));
        assert_eq!(query_param("a&b=2", "a"), Some(""));
        assert_eq!(query_param("a=1", "c"), None);
    }
}
