//! The control plane's input: a mesh description (YAML) of services, their
//! workloads, traffic rules (what Istio's VirtualService says) and
//! destination policies (Istio's DestinationRule), and what it generates
//! for each proxy ([`generate`]).
//!
//! A mesh is one file or a directory of `*.yaml`/`*.yml` files, each with a
//! `services:` list; together they are one mesh. Loading checks it whole:
//! every problem is reported with file, line and field path, and a mesh
//! with any problem is refused whole.

pub mod generate;
mod lines;
pub mod source;

use crate::duration::Dur;
use crate::model::{FaultInjection, HeaderMutation, LbPolicy, RetryPolicy};
use crate::validate::{check_header_name, check_header_value};
use lines::Lines;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The DNS suffix of service names: `<name>.<namespace>.svc.<domain>`.
pub const DOMAIN: &str = "cluster.local";

/// One file of a mesh description.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeshFile {
    #[serde(default)]
    pub services: Vec<Service>,
}

/// A service: a name, its ports, and the workloads that serve it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    pub ports: Vec<ServicePort>,
    /// Static endpoints; registered workloads join these at run time.
    #[serde(default)]
    pub workloads: Vec<Workload>,
    /// Named groups of workloads by label (DestinationRule subsets).
    #[serde(default)]
    pub subsets: Vec<Subset>,
    /// How callers reach the workloads (DestinationRule traffic policy).
    #[serde(default)]
    pub policy: Policy,
    /// HTTP traffic rules, in order; the first that matches a request
    /// decides where it goes (VirtualService `http`). Without rules, all
    /// traffic goes to every workload of the service.
    #[serde(default)]
    pub routes: Vec<HttpRoute>,
    /// Which services this service's sidecars may call (`name` in the same
    /// namespace or `name.namespace`); absent: every service in the mesh
    /// (Istio's Sidecar `egress`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<String>>,
}

fn default_namespace() -> String {
    "default".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicePort {
    pub port: u16,
    #[serde(default)]
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// HTTP/1.1.
    #[default]
    Http,
    /// HTTP/2 with prior knowledge (h2c).
    Http2,
    /// gRPC (HTTP/2).
    Grpc,
    /// Opaque TCP.
    Tcp,
}

impl Protocol {
    pub fn is_http(self) -> bool {
        self != Protocol::Tcp
    }
}

/// One workload (an instance of the service).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `ip:port` (single-port services) or `ip` (the workload serves each
    /// service port on the same port number, or as `ports` says).
    pub address: String,
    /// Service port -> the port this workload serves it on.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<u16, u16>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Load-balancing weight.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

impl Workload {
    /// The `ip:port` serving `service_port` (after validation).
    pub fn endpoint(&self, service_port: u16) -> Option<SocketAddr> {
        if let Ok(sa) = self.address.parse::<SocketAddr>() {
            return Some(sa);
        }
        let ip: IpAddr = self.address.parse().ok()?;
        let port = self
            .ports
            .get(&service_port)
            .copied()
            .unwrap_or(service_port);
        Some(SocketAddr::new(ip, port))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subset {
    pub name: String,
    /// Workloads with all of these labels belong to the subset.
    pub labels: BTreeMap<String, String>,
}

/// How callers reach the service's workloads.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub load_balancer: LbPolicy,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    /// Pooled connections idle this long are closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: Dur,
}

fn default_connect_timeout() -> Dur {
    Dur::from_secs(5)
}

fn default_idle_timeout() -> Dur {
    Dur::from_secs(3600)
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            load_balancer: LbPolicy::RoundRobin,
            connect_timeout: default_connect_timeout(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

/// One HTTP traffic rule.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpRoute {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The rule applies when any of these matches; empty: always.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<Match>,
    /// Where matching requests go: one destination, or several with
    /// percentage weights summing to 100.
    pub destinations: Vec<Destination>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite>,
    /// Time allowed for the whole request (default 15 s; 0: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub request_headers: HeaderMutation,
    #[serde(default, skip_serializing_if = "HeaderMutation::is_empty")]
    pub response_headers: HeaderMutation,
    /// Delays and aborts injected into matching requests (as in a static
    /// route: `delay: { fixed, percent }`, `abort: { http_status |
    /// grpc_status, percent }`, `max_active_faults`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultInjection>,
    /// Retries (as in a static route: `retry_on`, `num_retries`,
    /// `per_try_timeout`, back-off, `retry_previous_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<RetryPolicy>,
}

/// A request match: all given conditions must hold.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// Path prefix (at most one of `prefix`, `path`, `regex`; none: any path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Exact path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Whole-path regular expression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    /// Header name -> condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Query parameter name -> condition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, StringMatch>,
}

/// Exactly one of `exact`, `prefix`, `regex`; or `present: true|false`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub present: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Destination {
    /// `name` (same namespace) or `name.namespace`; default: this service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A subset of the destination service; default: all its workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subset: Option<String>,
    /// The destination service's port; default: the port the request came
    /// for, else the destination's only port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Percentage of matching requests (with several destinations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rewrite {
    /// Replaces the matched path prefix (or the whole path of an exact
    /// match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Replaces `Host`/`:authority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

impl Service {
    pub fn fqdn(&self) -> String {
        format!("{}.{}.svc.{DOMAIN}", self.name, self.namespace)
    }

    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }

    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }
}

/// A whole mesh, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Mesh {
    pub services: Vec<Service>,
    by_name: HashMap<(String, String), usize>,
}

impl Mesh {
    /// Builds and checks a mesh from parsed files (`(file name, text,
    /// contents)`).
    fn build(files: Vec<(String, String, MeshFile)>) -> Result<Mesh, Vec<MeshError>> {
        let mut errors = Vec::new();
        let mut mesh = Mesh::default();
        // Where each service came from: (file index, index in file).
        let mut origin = Vec::new();
        let indexes: Vec<Lines> = files
            .iter()
            .map(|(_, text, _)| Lines::index(text))
            .collect();
        for (fi, (_, _, f)) in files.iter().enumerate() {
            for (si, s) in f.services.iter().enumerate() {
                let key = (s.name.clone(), s.namespace.clone());
                if let Some(&other) = mesh.by_name.get(&key) {
                    let (ofi, osi): (usize, usize) = origin[other];
                    let where_ = match indexes[ofi].line(&format!("services[{osi}]")) {
                        Some(l) => format!("{}:{l}", files[ofi].0),
                        None => files[ofi].0.clone(),
                    };
                    errors.push(MeshError::at(
                        &files[fi].0,
                        &indexes[fi],
                        format!("services[{si}].name"),
                        format!(
                            "service {:?} in namespace {:?} is already defined at {where_}",
                            s.name, s.namespace
                        ),
                    ));
                    continue;
                }
                mesh.by_name.insert(key, mesh.services.len());
                mesh.services.push(s.clone());
                origin.push((fi, si));
            }
        }
        for (i, s) in mesh.services.iter().enumerate() {
            let (fi, si) = origin[i];
            let mut e = Check { errors: Vec::new() };
            mesh.check_service(&mut e, &format!("services[{si}]"), s);
            errors.extend(
                e.errors.into_iter().map(|(path, message)| {
                    MeshError::at(&files[fi].0, &indexes[fi], path, message)
                }),
            );
        }
        if errors.is_empty() {
            Ok(mesh)
        } else {
            Err(errors)
        }
    }

    pub fn service(&self, name: &str, namespace: &str) -> Option<&Service> {
        self.by_name
            .get(&(name.to_string(), namespace.to_string()))
            .map(|i| &self.services[*i])
    }

    /// Resolves a reference written in a service of `namespace`: `name`
    /// (same namespace) or `name.namespace`.
    pub fn resolve(&self, reference: &str, namespace: &str) -> Option<&Service> {
        if let Some(s) = self.service(reference, namespace) {
            return Some(s);
        }
        let (name, ns) = reference.split_once('.')?;
        self.service(name, ns)
    }

    fn check_service(&self, e: &mut Check, p: &str, s: &Service) {
        e.dns_label(&format!("{p}.name"), &s.name);
        e.dns_label(&format!("{p}.namespace"), &s.namespace);
        if s.ports.is_empty() {
            e.push(format!("{p}.ports"), "a service needs at least one port");
        }
        let mut ports = HashSet::new();
        for (i, port) in s.ports.iter().enumerate() {
            if port.port == 0 {
                e.push(format!("{p}.ports[{i}].port"), "port 0 is not a port");
            }
            if !ports.insert(port.port) {
                e.push(
                    format!("{p}.ports[{i}].port"),
                    format!("port {} is listed twice", port.port),
                );
            }
        }
        for (i, w) in s.workloads.iter().enumerate() {
            let wp = format!("{p}.workloads[{i}]");
            match (w.address.parse::<SocketAddr>(), w.address.parse::<IpAddr>()) {
                (Ok(_), _) if s.ports.len() > 1 => e.push(
                    format!("{wp}.address"),
                    format!(
                        "{:?}: a service with several ports takes an IP address here, with `ports` \
                         mapping service ports to the workload's ports where they differ",
                        w.address
                    ),
                ),
                (Ok(_), _) if !w.ports.is_empty() => e.push(
                    format!("{wp}.ports"),
                    "give either `address: ip:port` or `address: ip` with `ports`, not both",
                ),
                (Ok(_), _) | (_, Ok(_)) => {}
                _ => e.push(
                    format!("{wp}.address"),
                    format!("invalid address {:?} (expected ip or ip:port)", w.address),
                ),
            }
            for (sp, wport) in &w.ports {
                if !ports.contains(sp) {
                    e.push(
                        format!("{wp}.ports"),
                        format!("the service has no port {sp}"),
                    );
                }
                if *wport == 0 {
                    e.push(format!("{wp}.ports"), "port 0 is not a port");
                }
            }
            if w.weight == 0 {
                e.push(format!("{wp}.weight"), "weight must be at least 1");
            }
        }
        let mut subsets = HashSet::new();
        for (i, sub) in s.subsets.iter().enumerate() {
            e.dns_label(&format!("{p}.subsets[{i}].name"), &sub.name);
            if !subsets.insert(&sub.name) {
                e.push(
                    format!("{p}.subsets[{i}].name"),
                    format!("subset {:?} is defined twice", sub.name),
                );
            }
        }
        if !s.routes.is_empty() && !s.ports.iter().any(|p| p.protocol.is_http()) {
            e.push(
                format!("{p}.routes"),
                "routes apply to http, http2 and grpc ports, and this service has none",
            );
        }
        for (i, r) in s.routes.iter().enumerate() {
            self.check_route(e, &format!("{p}.routes[{i}]"), s, r);
        }
        if let Some(egress) = &s.egress {
            for (i, name) in egress.iter().enumerate() {
                if self.resolve(name, &s.namespace).is_none() {
                    e.push(
                        format!("{p}.egress[{i}]"),
                        format!("no service {name:?} in the mesh"),
                    );
                }
            }
        }
    }

    fn check_route(&self, e: &mut Check, p: &str, s: &Service, r: &HttpRoute) {
        for (i, m) in r.matches.iter().enumerate() {
            let mp = format!("{p}.match[{i}]");
            let set = [&m.prefix, &m.path, &m.regex]
                .iter()
                .filter(|x| x.is_some())
                .count();
            if set > 1 {
                e.push(mp.clone(), "give at most one of prefix, path and regex");
            }
            for (field, v) in [("prefix", &m.prefix), ("path", &m.path)] {
                if let Some(v) = v
                    && !v.starts_with('/')
                {
                    e.push(format!("{mp}.{field}"), format!("{v:?} must start with /"));
                }
            }
            e.regex(&format!("{mp}.regex"), &m.regex);
            for (name, sm) in &m.headers {
                let hp = format!("{mp}.headers.{name}");
                if let Err(msg) = check_header_name(name) {
                    e.push(hp.clone(), msg);
                }
                e.string_match(&hp, sm);
            }
            for (name, sm) in &m.query {
                e.string_match(&format!("{mp}.query.{name}"), sm);
            }
        }
        if r.destinations.is_empty() {
            e.push(
                format!("{p}.destinations"),
                "a route needs at least one destination",
            );
        }
        let several = r.destinations.len() > 1;
        let mut total = 0u64;
        for (i, d) in r.destinations.iter().enumerate() {
            let dp = format!("{p}.destinations[{i}]");
            match (d.weight, several) {
                (None, true) => e.push(
                    format!("{dp}.weight"),
                    "with several destinations each needs a weight (percentages summing to 100)",
                ),
                (Some(w), true) => total += u64::from(w),
                (Some(w), false) if w != 100 => e.push(
                    format!("{dp}.weight"),
                    format!(
                        "a single destination takes all traffic: weight {w} must be 100 or left out"
                    ),
                ),
                _ => {}
            }
            let target = match &d.service {
                None => Some(s),
                Some(name) => {
                    let t = self.resolve(name, &s.namespace);
                    if t.is_none() {
                        e.push(
                            format!("{dp}.service"),
                            format!("no service {name:?} in the mesh"),
                        );
                    }
                    t
                }
            };
            let Some(t) = target else { continue };
            if let Some(sub) = &d.subset
                && t.subset(sub).is_none()
            {
                e.push(
                    format!("{dp}.subset"),
                    format!("service {:?} has no subset {sub:?}", t.name),
                );
            }
            match d.port {
                Some(port) => match t.port(port) {
                    None => e.push(
                        format!("{dp}.port"),
                        format!("service {:?} has no port {port}", t.name),
                    ),
                    Some(tp) if !tp.protocol.is_http() => e.push(
                        format!("{dp}.port"),
                        format!("port {port} of service {:?} is tcp, not http", t.name),
                    ),
                    Some(_) => {}
                },
                None if !std::ptr::eq(t, s) => {
                    // Resolved per request port: every http port of this
                    // service must exist on the target, or it must have one.
                    let http: Vec<u16> = t
                        .ports
                        .iter()
                        .filter(|p| p.protocol.is_http())
                        .map(|p| p.port)
                        .collect();
                    let missing = s
                        .ports
                        .iter()
                        .filter(|p| p.protocol.is_http())
                        .any(|p| !http.contains(&p.port));
                    if http.is_empty() || (missing && http.len() > 1) {
                        e.push(
                            format!("{dp}.port"),
                            format!(
                                "say which port of service {:?} to use (it has {:?})",
                                t.name,
                                t.ports.iter().map(|p| p.port).collect::<Vec<_>>()
                            ),
                        );
                    }
                }
                None => {}
            }
        }
        if several && total != 100 {
            e.push(
                format!("{p}.destinations"),
                format!("weights are percentages and must sum to 100, not {total}"),
            );
        }
        if let Some(f) = &r.fault {
            for fe in crate::validate::fault_errors(&format!("{p}.fault"), f) {
                e.push(fe.path, fe.message);
            }
        }
        if let Some(retry) = &r.retries {
            for fe in crate::validate::retry_errors(&format!("{p}.retries"), retry) {
                e.push(fe.path, fe.message);
            }
        }
        if let Some(rw) = &r.rewrite {
            if let Some(pre) = &rw.prefix
                && !pre.starts_with('/')
            {
                e.push(
                    format!("{p}.rewrite.prefix"),
                    format!("{pre:?} must start with /"),
                );
            }
            if let Some(a) = &rw.authority
                && (a.is_empty() || check_header_value(a).is_err() || a.contains(' '))
            {
                e.push(
                    format!("{p}.rewrite.authority"),
                    format!("invalid authority {a:?}"),
                );
            }
        }
        for (field, hm) in [
            ("request_headers", &r.request_headers),
            ("response_headers", &r.response_headers),
        ] {
            for (i, h) in hm.add.iter().enumerate() {
                if let Err(msg) =
                    check_header_name(&h.name).and_then(|_| check_header_value(&h.value))
                {
                    e.push(format!("{p}.{field}.add[{i}]"), msg);
                }
            }
            for (i, h) in hm.remove.iter().enumerate() {
                if let Err(msg) = check_header_name(h) {
                    e.push(format!("{p}.{field}.remove[{i}]"), msg);
                }
            }
        }
    }
}

/// Collects `(path, message)` problems.
struct Check {
    errors: Vec<(String, String)>,
}

impl Check {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push((path.into(), message.into()));
    }

    fn dns_label(&mut self, path: &str, v: &str) {
        let ok = !v.is_empty()
            && v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !v.starts_with('-')
            && !v.ends_with('-');
        if !ok {
            self.push(
                path,
                format!("{v:?} must be a DNS label: 1-63 of a-z, 0-9 and '-', not starting or ending with '-'"),
            );
        }
    }

    fn regex(&mut self, path: &str, re: &Option<String>) {
        if let Some(re) = re
            && let Err(err) = regex::Regex::new(re)
        {
            self.push(path, format!("invalid regex: {err}"));
        }
    }

    fn string_match(&mut self, path: &str, m: &StringMatch) {
        let set = [
            m.exact.is_some(),
            m.prefix.is_some(),
            m.regex.is_some(),
            m.present.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set != 1 {
            self.push(path, "give exactly one of exact, prefix, regex and present");
        }
        self.regex(&format!("{path}.regex"), &m.regex);
    }
}

/// One problem in a mesh description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct MeshError {
    pub file: String,
    pub line: Option<usize>,
    /// The field at fault (empty: the file as a whole).
    pub path: String,
    pub message: String,
}

impl fmt::Display for MeshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl MeshError {
    fn at(file: &str, lines: &Lines, path: String, message: String) -> MeshError {
        MeshError {
            file: file.to_string(),
            line: lines.line(&path),
            path,
            message,
        }
    }

    fn file(file: &str, message: String) -> MeshError {
        MeshError {
            file: file.to_string(),
            line: None,
            path: String::new(),
            message,
        }
    }
}

/// Parses one file's text.
fn parse_file(name: &str, text: &str) -> Result<MeshFile, MeshError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize::<_, MeshFile>(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let line = inner.location().map(|l| l.line());
        let mut message = inner.to_string();
        // serde_yaml_ng appends " at line L column C"; the line is ours.
        if let Some(cut) = message.find(" at line ") {
            message.truncate(cut);
        }
        if let Some((head, rest)) = message.split_once(": ")
            && !head.contains(' ')
        {
            message = rest.to_string();
        }
        MeshError {
            file: name.to_string(),
            line,
            path: if path == "." { String::new() } else { path },
            message,
        }
    })
}

/// Parses and checks a mesh given as texts (`(file name, text)`).
pub fn parse(files: &[(String, String)]) -> Result<Mesh, Vec<MeshError>> {
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for (name, text) in files {
        match parse_file(name, text) {
            Ok(f) => parsed.push((name.clone(), text.clone(), f)),
            Err(e) => errors.push(e),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Mesh::build(parsed)
}

/// The files a mesh path stands for: the file itself, or a directory's
/// `*.yaml` and `*.yml` files (not recursive), sorted by name.
pub fn mesh_files(path: &Path) -> Result<Vec<PathBuf>, MeshError> {
    let shown = path.display().to_string();
    let meta = std::fs::metadata(path)
        .map_err(|e| MeshError::file(&shown, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| MeshError::file(&shown, format!("cannot read directory: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Reads a mesh file or directory: its files' names and texts.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, Vec<MeshError>> {
    let files = mesh_files(path).map_err(|e| vec![e])?;
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => out.push((name, text)),
            Err(e) => errors.push(MeshError::file(&name, format!("cannot read: {e}"))),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Reads, parses and checks a mesh file or directory.
pub fn load(path: &Path) -> Result<Mesh, Vec<MeshError>> {
    parse(&read(path)?)
}
