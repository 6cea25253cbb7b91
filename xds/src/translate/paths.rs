//! Model paths (from [`crate::validate`]) -> paths inside the xDS resource,
//! in Envoy's field names.

use super::cluster::{HTTP_OPTIONS_KEY, LEGATE_METADATA, MAX_IDLE_KEY};

struct Seg<'a> {
    raw: &'a str,
    name: &'a str,
    index: Option<usize>,
}

fn segs(p: &str) -> Vec<Seg<'_>> {
    p.split('.')
        .filter(|s| !s.is_empty())
        .map(|raw| match raw.split_once('[') {
            Some((name, rest)) => Seg {
                raw,
                name,
                index: rest.trim_end_matches(']').parse().ok(),
            },
            None => Seg {
                raw,
                name: raw,
                index: None,
            },
        })
        .collect()
}

struct Out(Vec<String>);

impl Out {
    fn push(&mut self, s: impl Into<String>) {
        self.0.push(s.into());
    }

    fn pass(&mut self, rest: &[Seg]) {
        self.0.extend(rest.iter().map(|s| s.raw.to_string()));
    }
}

/// Maps `model_path` (past its first segment, the resource in the
/// one-resource config) with `f`.
fn map(model_path: &str, f: impl FnOnce(&[Seg], &mut Out)) -> String {
    let s = segs(model_path);
    let mut out = Out(Vec::new());
    f(s.get(1..).unwrap_or(&[]), &mut out);
    out.0.join(".")
}

/// `listeners[0]...`; `chains[j]` is the Envoy path of model chain `j`.
pub(crate) fn listener(model_path: &str, chains: &[String]) -> String {
    map(model_path, |s, out| match s {
        [a, rest @ ..] if a.name == "address" => {
            out.push("address.socket_address");
            out.pass(rest);
        }
        [fc, rest @ ..] if fc.name == "filter_chains" && fc.index.is_some() => {
            match fc.index.and_then(|j| chains.get(j)) {
                Some(origin) => out.push(origin.clone()),
                None => out.push(fc.raw),
            }
            match rest {
                [f, rest @ ..] if f.name == "http" => {
                    out.push("filters[0].typed_config");
                    hcm(rest, out);
                }
                [f, rest @ ..] if f.name == "tcp" => {
                    out.push("filters[0].typed_config");
                    out.pass(rest);
                }
                _ => out.pass(rest),
            }
        }
        _ => out.pass(s),
    })
}

fn hcm(s: &[Seg], out: &mut Out) {
    match s {
        [f, rest @ ..] if f.name == "route_config" => {
            out.push("route_config");
            route_config_in(rest, out);
        }
        [f, rest @ ..] if f.name == "rds" => {
            out.push("rds.route_config_name");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "max_request_headers_count" => {
            out.push("common_http_protocol_options.max_headers_count");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "http2_max_concurrent_streams" => {
            out.push("http2_protocol_options.max_concurrent_streams");
            out.pass(rest);
        }
        _ => out.pass(s),
    }
}

/// `route_configs[0]...`.
pub(crate) fn route_config(model_path: &str) -> String {
    map(model_path, route_config_in)
}

fn route_config_in(s: &[Seg], out: &mut Out) {
    match s {
        [vh, rest @ ..] if vh.name == "virtual_hosts" => {
            out.push(vh.raw);
            virtual_host(rest, out);
        }
        _ => out.pass(s),
    }
}

fn retry(s: &[Seg], out: &mut Out) {
    out.push("retry_policy");
    match s {
        [f, rest @ ..] if f.name == "backoff_base" => {
            out.push("retry_back_off.base_interval");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "backoff_max" => {
            out.push("retry_back_off.max_interval");
            out.pass(rest);
        }
        _ => out.pass(s),
    }
}

fn per_filter(filter: &str, s: &[Seg], out: &mut Out) {
    out.push(format!("typed_per_filter_config.{filter}"));
    match s {
        [d, f, rest @ ..] if d.name == "delay" && f.name == "fixed" => {
            out.push("delay.fixed_delay");
            out.pass(rest);
        }
        [f, rest @ ..] if matches!(f.name, "max_tokens" | "tokens_per_fill" | "fill_interval") => {
            out.push("token_bucket");
            out.push(f.raw);
            out.pass(rest);
        }
        _ => out.pass(s),
    }
}

fn virtual_host(s: &[Seg], out: &mut Out) {
    match s {
        [r, rest @ ..] if r.name == "retry" => retry(rest, out),
        [r, rest @ ..] if r.name == "rate_limit" => {
            per_filter(super::ratelimit::RATE_LIMIT_FILTER, rest, out)
        }
        [m, rest @ ..] if m.name == "request_headers" => mutation("request", rest, out),
        [m, rest @ ..] if m.name == "response_headers" => mutation("response", rest, out),
        [r, rest @ ..] if r.name == "routes" => {
            out.push(r.raw);
            route(rest, out);
        }
        _ => out.pass(s),
    }
}

fn mutation(dir: &str, s: &[Seg], out: &mut Out) {
    match s {
        [] => out.push(format!("{dir}_headers_to_add")),
        [a, rest @ ..] if a.name == "add" => {
            out.push(format!("{dir}_headers_to_add{}", index(a)));
            match rest {
                [f, rest @ ..] if f.name == "name" => {
                    out.push("header.key");
                    out.pass(rest);
                }
                [f, rest @ ..] if f.name == "value" => {
                    out.push("header.value");
                    out.pass(rest);
                }
                _ => out.pass(rest),
            }
        }
        [r, rest @ ..] if r.name == "remove" => {
            out.push(format!("{dir}_headers_to_remove{}", index(r)));
            out.pass(rest);
        }
        _ => out.pass(s),
    }
}

fn index(s: &Seg) -> String {
    s.index.map(|i| format!("[{i}]")).unwrap_or_default()
}

fn route(s: &[Seg], out: &mut Out) {
    match s {
        [m, rest @ ..] if m.name == "match" => {
            out.push("match");
            match rest {
                [r, rest @ ..] if r.name == "regex" => {
                    out.push("safe_regex.regex");
                    out.pass(rest);
                }
                _ => out.pass(rest),
            }
        }
        [a, rest @ ..] if a.name == "route" => {
            out.push("route");
            route_action(rest, out);
        }
        [r, rest @ ..] if r.name == "redirect" => {
            out.push("redirect");
            if let [f, rest @ ..] = rest {
                out.push(match f.name {
                    "scheme" => "scheme_redirect",
                    "host" => "host_redirect",
                    "path" => "path_redirect",
                    "port" => "port_redirect",
                    other => other,
                });
                out.pass(rest);
            }
        }
        [m, rest @ ..] if m.name == "request_headers" => mutation("request", rest, out),
        [m, rest @ ..] if m.name == "response_headers" => mutation("response", rest, out),
        [f, rest @ ..] if f.name == "fault" => per_filter(super::fault::FAULT_FILTER, rest, out),
        [r, rest @ ..] if r.name == "rate_limit" => {
            per_filter(super::ratelimit::RATE_LIMIT_FILTER, rest, out)
        }
        _ => out.pass(s),
    }
}

fn route_action(s: &[Seg], out: &mut Out) {
    match s {
        [r, rest @ ..] if r.name == "retry" => retry(rest, out),
        [w, rest @ ..] if w.name == "weighted_clusters" => {
            out.push("weighted_clusters");
            if w.index.is_some() {
                out.push(format!("clusters{}", index(w)));
            }
            out.pass(rest);
        }
        [h, rest @ ..] if h.name == "host_rewrite" => {
            out.push("host_rewrite_literal");
            out.pass(rest);
        }
        [r, rest @ ..] if r.name == "regex_rewrite" => {
            out.push("regex_rewrite");
            match rest {
                [f, rest @ ..] if f.name == "pattern" => {
                    out.push("pattern.regex");
                    out.pass(rest);
                }
                _ => out.pass(rest),
            }
        }
        [h, rest @ ..] if h.name == "hash_policy" => {
            out.push(h.raw);
            match rest {
                [f, rest @ ..] if f.name == "header" => {
                    out.push("header.header_name");
                    out.pass(rest);
                }
                [f, rest @ ..] if f.name == "cookie" => {
                    out.push("cookie.name");
                    out.pass(rest);
                }
                _ => out.pass(rest),
            }
        }
        _ => out.pass(s),
    }
}

/// `clusters[0]...` of a Cluster; `endpoints[j]` is the Envoy path of
/// model endpoint `j`.
pub(crate) fn cluster(model_path: &str, endpoints: &[String]) -> String {
    map(model_path, |s, out| match s {
        [f, rest @ ..] if f.name == "eds_service_name" => {
            out.push("eds_cluster_config.service_name");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "ring_size" => {
            out.push("ring_hash_lb_config.minimum_ring_size");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "http2_max_concurrent_streams" => {
            out.push(format!(
                "typed_extension_protocol_options[{HTTP_OPTIONS_KEY:?}]"
            ));
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "idle_timeout" => {
            out.push(format!(
                "typed_extension_protocol_options[{HTTP_OPTIONS_KEY:?}].common_http_protocol_options.idle_timeout"
            ));
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "max_idle_connections_per_endpoint" => {
            out.push(format!(
                "metadata.filter_metadata[{LEGATE_METADATA:?}].{MAX_IDLE_KEY}"
            ));
            out.pass(rest);
        }
        [e, rest @ ..] if e.name == "endpoints" && e.index.is_some() => {
            endpoint(e, rest, endpoints, out);
        }
        _ => out.pass(s),
    })
}

/// `clusters[0]...` of the `eds` cluster standing for a
/// ClusterLoadAssignment.
pub(crate) fn load_assignment(model_path: &str, endpoints: &[String]) -> String {
    map(model_path, |s, out| match s {
        [f, rest @ ..] if f.name == "name" => {
            out.push("cluster_name");
            out.pass(rest);
        }
        [e, rest @ ..] if e.name == "endpoints" && e.index.is_some() => {
            endpoint(e, rest, endpoints, out);
        }
        _ => out.pass(s),
    })
}

fn endpoint(e: &Seg, rest: &[Seg], endpoints: &[String], out: &mut Out) {
    match e.index.and_then(|j| endpoints.get(j)) {
        Some(origin) => out.push(origin.clone()),
        None => out.push(e.raw),
    }
    match rest {
        [f, rest @ ..] if f.name == "address" => {
            out.push("endpoint.address.socket_address");
            out.pass(rest);
        }
        [f, rest @ ..] if f.name == "weight" => {
            out.push("load_balancing_weight");
            out.pass(rest);
        }
        _ => out.pass(rest),
    }
}
