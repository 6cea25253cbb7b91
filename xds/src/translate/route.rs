//! RouteConfiguration, virtual hosts, routes and header mutations.

use super::filters;
use super::{
    HEDGING_NOT_YET, MIRRORING_NOT_YET, NO_CORS, NO_SUBSETS, R, RATE_LIMITS_NOT_YET, TLS_NOT_YET,
    TranslateError, at, at_i, check, dur_to, dynamic_stub, nonzero, opt_dur, paths, refusal,
    refuse, unknown_enum,
};
use crate::duration::Dur;
use crate::model;
use crate::validate::{check_header_name, check_header_value, validate};
use crate::wire::envoy::config::core::v3 as xcore;
use crate::wire::envoy::config::route::v3 as xroute;
use crate::wire::envoy::r#type::matcher::v3 as xmatcher;

const NO_FILTER_CONFIG: &str = "not supported (Legate has no HTTP filters to configure)";
const NO_ROUTE_SPECIFIERS: &str = "not supported (route specifiers)";

/// Translates a RouteConfiguration (validated as the model would).
pub fn route_config_from_xds(
    r: &xroute::RouteConfiguration,
) -> Result<model::RouteConfiguration, TranslateError> {
    let m = rc_from("", r).map_err(|e| e.into_error("RouteConfiguration", &r.name))?;
    let config = model::Config {
        dynamic: Some(dynamic_stub()),
        route_configs: vec![m.clone()],
        ..Default::default()
    };
    check("RouteConfiguration", &r.name, validate(&config), |p| {
        paths::route_config(p)
    })?;
    Ok(m)
}

/// Which of the four header-mutation lists are set, by Envoy field name,
/// for levels where Legate refuses them.
fn header_lists(
    request_add: &[xcore::HeaderValueOption],
    request_remove: &[String],
    response_add: &[xcore::HeaderValueOption],
    response_remove: &[String],
) -> [(&'static str, bool); 4] {
    [
        ("request_headers_to_add", !request_add.is_empty()),
        ("request_headers_to_remove", !request_remove.is_empty()),
        ("response_headers_to_add", !response_add.is_empty()),
        ("response_headers_to_remove", !response_remove.is_empty()),
    ]
}

/// A route configuration at `p` (the resource itself, or an HTTP
/// connection manager's inline `route_config`).
pub(crate) fn rc_from(p: &str, r: &xroute::RouteConfiguration) -> R<model::RouteConfiguration> {
    const LEVEL: &str = "not supported yet (header mutations at the route configuration level; set them on the virtual hosts)";
    let refused = header_lists(
        &r.request_headers_to_add,
        &r.request_headers_to_remove,
        &r.response_headers_to_add,
        &r.response_headers_to_remove,
    );
    if let Some((field, _)) = refused.iter().find(|(_, set)| *set) {
        return refuse(at(p, field), LEVEL);
    }
    if !r.internal_only_headers.is_empty() {
        return refuse(at(p, "internal_only_headers"), "not supported yet");
    }
    if r.vhds.is_some() {
        return refuse(at(p, "vhds"), "not supported");
    }
    if !r.request_mirror_policies.is_empty() {
        return refuse(at(p, "request_mirror_policies"), MIRRORING_NOT_YET);
    }
    if r.ignore_port_in_host_matching {
        return refuse(
            at(p, "ignore_port_in_host_matching"),
            "not supported: use the HTTP connection manager's strip_any_host_port",
        );
    }
    let refused = [
        (
            "vhost_header",
            !r.vhost_header.is_empty(),
            "not supported (Legate picks the virtual host by the request's authority)",
        ),
        (
            "ignore_path_parameters_in_path_matching",
            r.ignore_path_parameters_in_path_matching,
            "not supported (Legate matches the whole path, parameters included)",
        ),
        (
            "typed_per_filter_config",
            !r.typed_per_filter_config.is_empty(),
            NO_FILTER_CONFIG,
        ),
        (
            "route_specifiers",
            !r.route_specifiers.is_empty(),
            NO_ROUTE_SPECIFIERS,
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(at(p, field), *message);
    }
    let virtual_hosts: Vec<model::VirtualHost> = r
        .virtual_hosts
        .iter()
        .enumerate()
        .map(|(i, vh)| vh_from(&at_i(p, "virtual_hosts", i), vh))
        .collect::<R<_>>()?;
    if r.most_specific_header_mutations_wins
        && let Some((i, j, name)) = same_header_changed(&virtual_hosts)
    {
        // The order of the levels only matters for a header both change.
        return refuse(
            at(p, "most_specific_header_mutations_wins"),
            format!(
                "not supported: virtual_hosts[{i}].routes[{j}] and its virtual host both change {name:?} (Legate applies a route's header changes before its virtual host's, as Envoy does by default)"
            ),
        );
    }
    Ok(model::RouteConfiguration {
        name: r.name.clone(),
        virtual_hosts,
    })
}

/// A header that both a route and its virtual host change (in the same
/// direction): the virtual host's index, the route's, and the header.
fn same_header_changed(vhs: &[model::VirtualHost]) -> Option<(usize, usize, String)> {
    fn names(m: &model::HeaderMutation) -> impl Iterator<Item = &str> {
        m.add
            .iter()
            .map(|h| h.name.as_str())
            .chain(m.remove.iter().map(String::as_str))
    }
    fn common(a: &model::HeaderMutation, b: &model::HeaderMutation) -> Option<String> {
        names(a)
            .find(|x| names(b).any(|y| x.eq_ignore_ascii_case(y)))
            .map(str::to_ascii_lowercase)
    }
    vhs.iter().enumerate().find_map(|(i, vh)| {
        vh.routes.iter().enumerate().find_map(|(j, r)| {
            common(&r.request_headers, &vh.request_headers)
                .or_else(|| common(&r.response_headers, &vh.response_headers))
                .map(|name| (i, j, name))
        })
    })
}

fn vh_from(p: &str, vh: &xroute::VirtualHost) -> R<model::VirtualHost> {
    use xroute::virtual_host::TlsRequirementType;
    match TlsRequirementType::try_from(vh.require_tls) {
        Ok(TlsRequirementType::None) => {}
        Ok(_) => return refuse(at(p, "require_tls"), TLS_NOT_YET),
        Err(_) => return Err(unknown_enum(&at(p, "require_tls"), vh.require_tls)),
    }
    if vh.matcher.is_some() {
        return refuse(at(p, "matcher"), "not supported (use routes)");
    }
    let refused = [
        (
            "rate_limits",
            !vh.rate_limits.is_empty(),
            RATE_LIMITS_NOT_YET,
        ),
        ("cors", vh.cors.is_some(), NO_CORS),
        (
            "retry_policy_typed_config",
            vh.retry_policy_typed_config.is_some(),
            "not supported (use retry_policy)",
        ),
        (
            "include_attempt_count_in_response",
            vh.include_attempt_count_in_response,
            "not supported (Legate sends no x-envoy-attempt-count header)",
        ),
        ("hedge_policy", vh.hedge_policy.is_some(), HEDGING_NOT_YET),
        (
            "request_mirror_policies",
            !vh.request_mirror_policies.is_empty(),
            MIRRORING_NOT_YET,
        ),
        (
            "route_specifiers",
            !vh.route_specifiers.is_empty(),
            NO_ROUTE_SPECIFIERS,
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(at(p, field), *message);
    }
    let vh_filters = filters::per_filter_config_from(p, &vh.typed_per_filter_config)?;
    let vh_fault = vh_filters.fault.flatten();
    Ok(model::VirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        routes: vh
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| route_from(&at_i(p, "routes", i), r, &vh_fault))
            .collect::<R<_>>()?,
        rate_limit: vh_filters.rate_limit,
        retry: vh
            .retry_policy
            .as_ref()
            .map(|r| super::retry::retry_from(&at(p, "retry_policy"), r))
            .transpose()?,
        include_attempt_count: vh.include_request_attempt_count,
        request_headers: mutation_from(
            p,
            "request",
            &vh.request_headers_to_add,
            &vh.request_headers_to_remove,
        )?,
        response_headers: mutation_from(
            p,
            "response",
            &vh.response_headers_to_add,
            &vh.response_headers_to_remove,
        )?,
    })
}

/// A route; `vh_fault` is its virtual host's fault config, taken when the
/// route has none of its own.
fn route_from(
    p: &str,
    r: &xroute::Route,
    vh_fault: &Option<model::FaultInjection>,
) -> R<model::Route> {
    use xroute::route::Action;
    let own = filters::per_filter_config_from(p, &r.typed_per_filter_config)?;
    let fault = match own.fault {
        Some(own) => own,
        None => vh_fault.clone(),
    };
    let rate_limit = own.rate_limit;
    if !r.route_specifiers.is_empty() {
        return refuse(at(p, "route_specifiers"), NO_ROUTE_SPECIFIERS);
    }
    let Some(m) = &r.r#match else {
        return refuse(at(p, "match"), "must be set");
    };
    let mut route = model::Route {
        fault,
        rate_limit,
        name: (!r.name.is_empty()).then(|| r.name.clone()),
        route_match: match_from(&at(p, "match"), m)?,
        request_headers: mutation_from(
            p,
            "request",
            &r.request_headers_to_add,
            &r.request_headers_to_remove,
        )?,
        response_headers: mutation_from(
            p,
            "response",
            &r.response_headers_to_add,
            &r.response_headers_to_remove,
        )?,
        ..Default::default()
    };
    match &r.action {
        Some(Action::Route(a)) => route.route = Some(action_from(&at(p, "route"), a)?),
        Some(Action::Redirect(a)) => route.redirect = Some(redirect_from(&at(p, "redirect"), a)?),
        Some(Action::DirectResponse(a)) => {
            route.direct_response = Some(direct_from(&at(p, "direct_response"), a)?);
        }
        Some(Action::FilterAction(_)) => {
            return refuse(at(p, "filter_action"), "not supported");
        }
        Some(Action::NonForwardingAction(_)) => {
            return refuse(
                at(p, "non_forwarding_action"),
                "not supported (Legate has no HTTP filters to answer the request)",
            );
        }
        None => {
            return refuse(p, "needs an action: route, redirect or direct_response");
        }
    }
    Ok(route)
}

/// A regular expression (RE2 syntax; Legate's engine takes the same
/// subset), checked here so the error names Envoy's field.
fn regex_from(p: &str, r: &xmatcher::RegexMatcher) -> R<String> {
    let rp = at(p, "regex");
    regex::Regex::new(&r.regex).map_err(|e| refusal(rp, format!("invalid regex: {e}")))?;
    Ok(r.regex.clone())
}

fn match_from(p: &str, m: &xroute::RouteMatch) -> R<model::RouteMatch> {
    use xroute::route_match::PathSpecifier;
    let mut out = model::RouteMatch {
        case_sensitive: m.case_sensitive.unwrap_or(true),
        ..Default::default()
    };
    match &m.path_specifier {
        Some(PathSpecifier::Prefix(s)) => out.prefix = Some(s.clone()),
        Some(PathSpecifier::Path(s)) => out.path = Some(s.clone()),
        Some(PathSpecifier::SafeRegex(r)) => {
            out.regex = Some(regex_from(&at(p, "safe_regex"), r)?);
        }
        Some(PathSpecifier::ConnectMatcher(_)) => {
            return refuse(
                at(p, "connect_matcher"),
                "not supported (Legate does not proxy CONNECT)",
            );
        }
        Some(PathSpecifier::PathSeparatedPrefix(_)) => {
            return refuse(at(p, "path_separated_prefix"), "not supported yet");
        }
        Some(PathSpecifier::PathMatchPolicy(_)) => {
            return refuse(
                at(p, "path_match_policy"),
                "not supported (use prefix, path or safe_regex)",
            );
        }
        None => return refuse(p, "set prefix, path or safe_regex"),
    }
    // Each of these narrows which requests the route matches.
    let refused = [
        (
            "runtime_fraction",
            m.runtime_fraction.is_some(),
            "not supported",
        ),
        ("cookies", !m.cookies.is_empty(), "not supported"),
        ("grpc", m.grpc.is_some(), "not supported yet"),
        ("tls_context", m.tls_context.is_some(), TLS_NOT_YET),
        (
            "dynamic_metadata",
            !m.dynamic_metadata.is_empty(),
            "not supported (Legate has no dynamic metadata)",
        ),
        (
            "filter_state",
            !m.filter_state.is_empty(),
            "not supported (Legate has no filter state)",
        ),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(at(p, field), *message);
    }
    out.headers = m
        .headers
        .iter()
        .enumerate()
        .map(|(i, h)| header_matcher_from(&at_i(p, "headers", i), h))
        .collect::<R<_>>()?;
    out.query_parameters = m
        .query_parameters
        .iter()
        .enumerate()
        .map(|(i, q)| query_matcher_from(&at_i(p, "query_parameters", i), q))
        .collect::<R<_>>()?;
    Ok(out)
}

fn header_matcher_from(p: &str, h: &xroute::HeaderMatcher) -> R<model::HeaderMatcher> {
    use xmatcher::string_matcher::MatchPattern;
    use xroute::header_matcher::HeaderMatchSpecifier as S;
    if h.treat_missing_header_as_empty {
        return refuse(at(p, "treat_missing_header_as_empty"), "not supported");
    }
    let mut out = model::HeaderMatcher {
        name: h.name.clone(),
        invert: h.invert_match,
        ..Default::default()
    };
    let unsupported = |field: &str| refuse(at(p, field), "not supported");
    match &h.header_match_specifier {
        Some(S::ExactMatch(s)) => out.exact = Some(s.clone()),
        Some(S::PrefixMatch(s)) => out.prefix = Some(s.clone()),
        Some(S::SafeRegexMatch(r)) => out.regex = Some(regex_from(&at(p, "safe_regex_match"), r)?),
        Some(S::PresentMatch(b)) => out.present = Some(*b),
        Some(S::RangeMatch(_)) => return unsupported("range_match"),
        Some(S::SuffixMatch(_)) => return unsupported("suffix_match"),
        Some(S::ContainsMatch(_)) => return unsupported("contains_match"),
        Some(S::StringMatch(sm)) => {
            let sp = at(p, "string_match");
            if sm.ignore_case {
                return refuse(at(&sp, "ignore_case"), "not supported");
            }
            match &sm.match_pattern {
                Some(MatchPattern::Exact(s)) => out.exact = Some(s.clone()),
                Some(MatchPattern::Prefix(s)) => out.prefix = Some(s.clone()),
                Some(MatchPattern::SafeRegex(r)) => {
                    out.regex = Some(regex_from(&at(&sp, "safe_regex"), r)?);
                }
                Some(MatchPattern::Suffix(_)) => return refuse(at(&sp, "suffix"), "not supported"),
                Some(MatchPattern::Contains(_)) => {
                    return refuse(at(&sp, "contains"), "not supported");
                }
                None => return refuse(sp, "set exact, prefix or safe_regex"),
            }
        }
        // Envoy: no specifier matches when the header is present.
        None => out.present = Some(true),
    }
    Ok(out)
}

fn query_matcher_from(
    p: &str,
    q: &xroute::QueryParameterMatcher,
) -> R<model::QueryParameterMatcher> {
    use xmatcher::string_matcher::MatchPattern;
    use xroute::query_parameter_matcher::QueryParameterMatchSpecifier as S;
    let mut out = model::QueryParameterMatcher {
        name: q.name.clone(),
        ..Default::default()
    };
    match &q.query_parameter_match_specifier {
        Some(S::PresentMatch(b)) => out.present = Some(*b),
        Some(S::StringMatch(sm)) => {
            let sp = at(p, "string_match");
            if sm.ignore_case {
                return refuse(at(&sp, "ignore_case"), "not supported");
            }
            match &sm.match_pattern {
                Some(MatchPattern::Exact(s)) => out.exact = Some(s.clone()),
                Some(MatchPattern::SafeRegex(r)) => {
                    out.regex = Some(regex_from(&at(&sp, "safe_regex"), r)?);
                }
                Some(MatchPattern::Prefix(_)) => return refuse(at(&sp, "prefix"), "not supported"),
                Some(MatchPattern::Suffix(_)) => return refuse(at(&sp, "suffix"), "not supported"),
                Some(MatchPattern::Contains(_)) => {
                    return refuse(at(&sp, "contains"), "not supported");
                }
                None => return refuse(sp, "set exact or safe_regex"),
            }
        }
        // Envoy: no specifier matches when the parameter is present.
        None => out.present = Some(true),
    }
    Ok(out)
}

fn action_from(p: &str, a: &xroute::RouteAction) -> R<model::RouteAction> {
    use xroute::route_action::{
        ClusterNotFoundResponseCode, ClusterSpecifier, HostRewriteSpecifier, InternalRedirectAction,
    };
    const NO_INTERNAL_REDIRECTS: &str =
        "not supported (Legate passes upstream redirects on to the client)";
    const REWRITES: &str = "not supported (use prefix_rewrite or regex_rewrite)";
    let refused = [
        ("metadata_match", a.metadata_match.is_some(), NO_SUBSETS),
        (
            "path_rewrite_policy",
            a.path_rewrite_policy.is_some(),
            REWRITES,
        ),
        ("path_rewrite", !a.path_rewrite.is_empty(), REWRITES),
        (
            "append_x_forwarded_host",
            a.append_x_forwarded_host,
            "not supported (Legate does not set x-forwarded-host)",
        ),
        (
            "flush_timeout",
            nonzero(&a.flush_timeout),
            "not supported yet",
        ),
        (
            "retry_policy_typed_config",
            a.retry_policy_typed_config.is_some(),
            "not supported (use retry_policy)",
        ),
        (
            "request_mirror_policies",
            !a.request_mirror_policies.is_empty(),
            MIRRORING_NOT_YET,
        ),
        (
            "rate_limits",
            !a.rate_limits.is_empty(),
            RATE_LIMITS_NOT_YET,
        ),
        ("cors", a.cors.is_some(), NO_CORS),
        (
            "max_stream_duration",
            a.max_stream_duration.as_ref().is_some_and(|m| {
                nonzero(&m.max_stream_duration) || m.grpc_timeout_header_max.is_some()
            }),
            "not supported yet (stream duration limits and grpc-timeout headers)",
        ),
        (
            "max_grpc_timeout",
            a.max_grpc_timeout.is_some(),
            "not supported (Legate does not read the grpc-timeout header; use timeout)",
        ),
        (
            "internal_redirect_policy",
            a.internal_redirect_policy.is_some(),
            NO_INTERNAL_REDIRECTS,
        ),
        ("hedge_policy", a.hedge_policy.is_some(), HEDGING_NOT_YET),
    ];
    if let Some((field, _, message)) = refused.iter().find(|(_, set, _)| *set) {
        return refuse(at(p, field), *message);
    }
    match InternalRedirectAction::try_from(a.internal_redirect_action) {
        Ok(InternalRedirectAction::PassThroughInternalRedirect) => {}
        Ok(InternalRedirectAction::HandleInternalRedirect) => {
            return refuse(at(p, "internal_redirect_action"), NO_INTERNAL_REDIRECTS);
        }
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "internal_redirect_action"),
                a.internal_redirect_action,
            ));
        }
    }
    match ClusterNotFoundResponseCode::try_from(a.cluster_not_found_response_code) {
        Ok(ClusterNotFoundResponseCode::ServiceUnavailable) => {}
        Ok(_) => {
            return refuse(
                at(p, "cluster_not_found_response_code"),
                "not supported (Legate answers 503 for an unknown cluster)",
            );
        }
        Err(_) => {
            return Err(unknown_enum(
                &at(p, "cluster_not_found_response_code"),
                a.cluster_not_found_response_code,
            ));
        }
    }
    let mut out = model::RouteAction::default();
    match &a.cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) if c.is_empty() => {
            return refuse(at(p, "cluster"), "must not be empty");
        }
        Some(ClusterSpecifier::Cluster(c)) => out.cluster = Some(c.clone()),
        Some(ClusterSpecifier::ClusterHeader(_)) => {
            return refuse(at(p, "cluster_header"), "not supported");
        }
        Some(ClusterSpecifier::WeightedClusters(w)) => {
            out.weighted_clusters = weighted_from(&at(p, "weighted_clusters"), w)?;
        }
        Some(ClusterSpecifier::ClusterSpecifierPlugin(_)) => {
            return refuse(at(p, "cluster_specifier_plugin"), "not supported");
        }
        Some(ClusterSpecifier::InlineClusterSpecifierPlugin(_)) => {
            return refuse(at(p, "inline_cluster_specifier_plugin"), "not supported");
        }
        None => return refuse(p, "set cluster or weighted_clusters"),
    }
    out.prefix_rewrite = (!a.prefix_rewrite.is_empty()).then(|| a.prefix_rewrite.clone());
    if let Some(rr) = &a.regex_rewrite {
        let rp = at(p, "regex_rewrite");
        let Some(pattern) = &rr.pattern else {
            return refuse(at(&rp, "pattern"), "must be set");
        };
        out.regex_rewrite = Some(model::RegexRewrite {
            pattern: pattern.regex.clone(),
            substitution: rr.substitution.clone(),
        });
    }
    match &a.host_rewrite_specifier {
        None => {}
        Some(HostRewriteSpecifier::HostRewriteLiteral(h)) => {
            out.host_rewrite = (!h.is_empty()).then(|| h.clone());
        }
        Some(HostRewriteSpecifier::AutoHostRewrite(false)) => {}
        Some(HostRewriteSpecifier::AutoHostRewrite(true)) => {
            return refuse(at(p, "auto_host_rewrite"), "not supported");
        }
        Some(HostRewriteSpecifier::HostRewriteHeader(_)) => {
            return refuse(at(p, "host_rewrite_header"), "not supported");
        }
        Some(HostRewriteSpecifier::HostRewritePathRegex(_)) => {
            return refuse(at(p, "host_rewrite_path_regex"), "not supported");
        }
        Some(HostRewriteSpecifier::HostRewrite(_)) => {
            return refuse(
                at(p, "host_rewrite"),
                "not supported (use host_rewrite_literal)",
            );
        }
    }
    out.timeout = opt_dur(&at(p, "timeout"), &a.timeout, Dur::from_secs(15))?;
    out.hash_policy = a
        .hash_policy
        .iter()
        .enumerate()
        .map(|(i, h)| hash_policy_from(&at_i(p, "hash_policy", i), h))
        .collect::<R<_>>()?;
    out.retry = a
        .retry_policy
        .as_ref()
        .map(|r| super::retry::retry_from(&at(p, "retry_policy"), r))
        .transpose()?;
    out.priority = super::upstream::priority_from(&at(p, "priority"), a.priority)?;
    Ok(out)
}

fn weighted_from(p: &str, w: &xroute::WeightedCluster) -> R<Vec<model::ClusterWeight>> {
    use xroute::weighted_cluster::RandomValueSpecifier;
    if !w.runtime_key_prefix.is_empty() {
        return refuse(at(p, "runtime_key_prefix"), "not supported");
    }
    match w.random_value_specifier {
        None | Some(RandomValueSpecifier::UseHashPolicy(false)) => {}
        Some(RandomValueSpecifier::HeaderName(_)) => {
            return refuse(at(p, "header_name"), "not supported");
        }
        Some(RandomValueSpecifier::UseHashPolicy(true)) => {
            return refuse(
                at(p, "use_hash_policy"),
                "not supported (Legate picks a weighted cluster at random)",
            );
        }
    }
    let mut out = Vec::with_capacity(w.clusters.len());
    for (i, c) in w.clusters.iter().enumerate() {
        let cp = at_i(p, "clusters", i);
        let headers = header_lists(
            &c.request_headers_to_add,
            &c.request_headers_to_remove,
            &c.response_headers_to_add,
            &c.response_headers_to_remove,
        );
        let others = [
            (
                "typed_per_filter_config",
                !c.typed_per_filter_config.is_empty(),
            ),
            ("host_rewrite_literal", c.host_rewrite_specifier.is_some()),
        ];
        if let Some((field, _)) = headers.iter().chain(&others).find(|(_, set)| *set) {
            return refuse(at(&cp, field), "not supported yet (per-cluster settings)");
        }
        if !c.cluster_header.is_empty() {
            return refuse(at(&cp, "cluster_header"), "not supported");
        }
        if c.metadata_match.is_some() {
            return refuse(at(&cp, "metadata_match"), NO_SUBSETS);
        }
        if c.name.is_empty() {
            return refuse(
                at(&cp, "name"),
                "must not be empty (cluster_header is not supported)",
            );
        }
        let Some(weight) = c.weight else {
            return refuse(at(&cp, "weight"), "must be set");
        };
        out.push(model::ClusterWeight {
            name: c.name.clone(),
            weight,
        });
    }
    Ok(out)
}

fn hash_policy_from(p: &str, h: &xroute::route_action::HashPolicy) -> R<model::HashPolicy> {
    use xroute::route_action::hash_policy::PolicySpecifier as S;
    // `terminal` is ignored: Legate always stops at the first policy that
    // yields a value (the outbound direction writes terminal: true).
    match &h.policy_specifier {
        Some(S::Header(x)) => {
            if x.regex_rewrite.is_some() {
                return refuse(at(p, "header.regex_rewrite"), "not supported");
            }
            Ok(model::HashPolicy {
                header: Some(x.header_name.clone()),
                ..Default::default()
            })
        }
        Some(S::Cookie(c)) => {
            if c.ttl.is_some() {
                return refuse(
                    at(p, "cookie.ttl"),
                    "not supported (Legate does not generate cookies)",
                );
            }
            if !c.path.is_empty() {
                return refuse(
                    at(p, "cookie.path"),
                    "not supported (Legate does not generate cookies)",
                );
            }
            Ok(model::HashPolicy {
                cookie: Some(c.name.clone()),
                ..Default::default()
            })
        }
        Some(S::ConnectionProperties(c)) => {
            if !c.source_ip {
                return refuse(
                    at(p, "connection_properties.source_ip"),
                    "must be true (a policy that hashes nothing)",
                );
            }
            Ok(model::HashPolicy {
                source_ip: true,
                ..Default::default()
            })
        }
        Some(S::QueryParameter(_)) => refuse(at(p, "query_parameter"), "not supported"),
        Some(S::FilterState(_)) => refuse(
            at(p, "filter_state"),
            "not supported (Legate has no filter state)",
        ),
        None => refuse(p, "set header, cookie or connection_properties"),
    }
}

fn redirect_from(p: &str, r: &xroute::RedirectAction) -> R<model::RedirectAction> {
    use xroute::redirect_action::{
        PathRewriteSpecifier, RedirectResponseCode as C, SchemeRewriteSpecifier,
    };
    let mut out = model::RedirectAction {
        host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
        strip_query: r.strip_query,
        ..Default::default()
    };
    out.scheme = match &r.scheme_rewrite_specifier {
        Some(SchemeRewriteSpecifier::HttpsRedirect(true)) => Some("https".into()),
        Some(SchemeRewriteSpecifier::HttpsRedirect(false)) => None,
        Some(SchemeRewriteSpecifier::SchemeRedirect(s)) => (!s.is_empty()).then(|| s.clone()),
        None => None,
    };
    out.port = match r.port_redirect {
        0 => None,
        port => Some(u16::try_from(port).map_err(|_| {
            refusal(
                at(p, "port_redirect"),
                format!("{port} is not a port (1 to 65535)"),
            )
        })?),
    };
    match &r.path_rewrite_specifier {
        None => {}
        Some(PathRewriteSpecifier::PathRedirect(s)) => out.path = Some(s.clone()),
        Some(PathRewriteSpecifier::PrefixRewrite(s)) => out.prefix_rewrite = Some(s.clone()),
        Some(PathRewriteSpecifier::RegexRewrite(_)) => {
            return refuse(at(p, "regex_rewrite"), "not supported");
        }
        Some(PathRewriteSpecifier::PathRewrite(_)) => {
            return refuse(
                at(p, "path_rewrite"),
                "not supported (use path_redirect or prefix_rewrite)",
            );
        }
    }
    out.response_code = match C::try_from(r.response_code) {
        Ok(C::MovedPermanently) => 301,
        Ok(C::Found) => 302,
        Ok(C::SeeOther) => 303,
        Ok(C::TemporaryRedirect) => 307,
        Ok(C::PermanentRedirect) => 308,
        Err(_) => return Err(unknown_enum(&at(p, "response_code"), r.response_code)),
    };
    Ok(out)
}

fn direct_from(p: &str, d: &xroute::DirectResponseAction) -> R<model::DirectResponse> {
    use xcore::data_source::Specifier;
    if d.body_format.is_some() {
        return refuse(
            at(p, "body_format"),
            "not supported (Legate sends the body as given)",
        );
    }
    let status = u16::try_from(d.status)
        .ok()
        .filter(|s| (200..=599).contains(s))
        .ok_or_else(|| {
            refusal(
                at(p, "status"),
                format!("{} is not between 200 and 599", d.status),
            )
        })?;
    let bp = at(p, "body");
    let body = match d.body.as_ref().and_then(|b| b.specifier.as_ref()) {
        None => None,
        Some(Specifier::InlineString(s)) => Some(s.clone()),
        Some(Specifier::InlineBytes(b)) => Some(
            String::from_utf8(b.clone())
                .map_err(|_| refusal(at(&bp, "inline_bytes"), "must be UTF-8"))?,
        ),
        Some(Specifier::Filename(_)) => {
            return refuse(
                at(&bp, "filename"),
                "not supported (use inline_string or inline_bytes)",
            );
        }
        Some(Specifier::EnvironmentVariable(_)) => {
            return refuse(
                at(&bp, "environment_variable"),
                "not supported (use inline_string or inline_bytes)",
            );
        }
    };
    Ok(model::DirectResponse { status, body })
}

/// `{dir}_headers_to_add` / `{dir}_headers_to_remove` of the message at `p`
/// (`dir` is `request` or `response`). Names and values are checked here,
/// with Envoy's paths; an empty value without keep_empty_value is dropped
/// (as Envoy does).
/// Header additions at `p.field[i]` (request ones may not touch `host`).
pub(crate) fn adds_from(
    p: &str,
    field: &str,
    add: &[xcore::HeaderValueOption],
    request: bool,
) -> R<Vec<model::HeaderValueOption>> {
    use xcore::header_value_option::HeaderAppendAction as A;
    let mut out = Vec::new();
    for (i, h) in add.iter().enumerate() {
        let hp = at_i(p, field, i);
        let Some(hv) = &h.header else {
            return refuse(at(&hp, "header"), "must be set");
        };
        let (value, vp) = if hv.raw_value.is_empty() {
            (hv.value.clone(), at(&hp, "header.value"))
        } else if hv.value.is_empty() {
            let vp = at(&hp, "header.raw_value");
            let v = String::from_utf8(hv.raw_value.clone())
                .map_err(|_| refusal(vp.clone(), "must be UTF-8"))?;
            (v, vp)
        } else {
            return refuse(at(&hp, "header"), "set value or raw_value, not both");
        };
        let kp = at(&hp, "header.key");
        check_header_name(&hv.key).map_err(|m| refusal(kp.clone(), m))?;
        if request && hv.key.eq_ignore_ascii_case("host") {
            return refuse(
                kp,
                "use the route's host_rewrite_literal to change the host",
            );
        }
        check_header_value(&value).map_err(|m| refusal(vp, m))?;
        let append = match h.append {
            // The deprecated `append`, when present, wins.
            Some(b) => b,
            None => match A::try_from(h.append_action) {
                Ok(A::AppendIfExistsOrAdd) => true,
                Ok(A::OverwriteIfExistsOrAdd) => false,
                Ok(other) => {
                    return refuse(
                        at(&hp, "append_action"),
                        format!("{} is not supported yet", other.as_str_name()),
                    );
                }
                Err(_) => return Err(unknown_enum(&at(&hp, "append_action"), h.append_action)),
            },
        };
        if value.is_empty() && !h.keep_empty_value {
            continue;
        }
        out.push(model::HeaderValueOption {
            name: hv.key.clone(),
            value,
            append,
        });
    }
    Ok(out)
}

fn mutation_from(
    p: &str,
    dir: &str,
    add: &[xcore::HeaderValueOption],
    remove: &[String],
) -> R<model::HeaderMutation> {
    let request = dir == "request";
    let mut out = model::HeaderMutation {
        add: adds_from(p, &format!("{dir}_headers_to_add"), add, request)?,
        ..Default::default()
    };
    for (i, n) in remove.iter().enumerate() {
        let np = at_i(p, &format!("{dir}_headers_to_remove"), i);
        check_header_name(n).map_err(|m| refusal(np.clone(), m))?;
        if request && n.eq_ignore_ascii_case("host") {
            return refuse(np, "the host header cannot be removed");
        }
        out.remove.push(n.clone());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// model -> xDS

/// The route configuration as xDS.
pub fn route_config_to_xds(r: &model::RouteConfiguration) -> xroute::RouteConfiguration {
    rc_to(r)
}

pub(crate) fn rc_to(r: &model::RouteConfiguration) -> xroute::RouteConfiguration {
    xroute::RouteConfiguration {
        name: r.name.clone(),
        virtual_hosts: r.virtual_hosts.iter().map(vh_to).collect(),
        ..Default::default()
    }
}

fn vh_to(vh: &model::VirtualHost) -> xroute::VirtualHost {
    xroute::VirtualHost {
        name: vh.name.clone(),
        domains: vh.domains.clone(),
        routes: vh.routes.iter().map(route_to).collect(),
        request_headers_to_add: adds_to(&vh.request_headers),
        request_headers_to_remove: vh.request_headers.remove.clone(),
        response_headers_to_add: adds_to(&vh.response_headers),
        response_headers_to_remove: vh.response_headers.remove.clone(),
        typed_per_filter_config: filters::per_filter_config_to(&None, &vh.rate_limit),
        retry_policy: vh.retry.as_ref().map(super::retry::retry_to),
        include_request_attempt_count: vh.include_attempt_count,
        ..Default::default()
    }
}

fn adds_to(m: &model::HeaderMutation) -> Vec<xcore::HeaderValueOption> {
    adds_to_list(&m.add)
}

pub(crate) fn adds_to_list(add: &[model::HeaderValueOption]) -> Vec<xcore::HeaderValueOption> {
    use xcore::header_value_option::HeaderAppendAction as A;
    add.iter()
        .map(|h| xcore::HeaderValueOption {
            header: Some(xcore::HeaderValue {
                key: h.name.clone(),
                value: h.value.clone(),
                ..Default::default()
            }),
            append: None,
            append_action: if h.append {
                A::AppendIfExistsOrAdd
            } else {
                A::OverwriteIfExistsOrAdd
            } as i32,
            keep_empty_value: h.value.is_empty(),
        })
        .collect()
}

fn regex_to(regex: &str) -> xmatcher::RegexMatcher {
    xmatcher::RegexMatcher {
        regex: regex.to_string(),
        ..Default::default()
    }
}

fn string_matcher(p: xmatcher::string_matcher::MatchPattern) -> xmatcher::StringMatcher {
    xmatcher::StringMatcher {
        match_pattern: Some(p),
        ignore_case: false,
    }
}

fn route_to(r: &model::Route) -> xroute::Route {
    use xroute::route::Action;
    let action = if let Some(a) = &r.route {
        Some(Action::Route(action_to(a)))
    } else if let Some(rd) = &r.redirect {
        Some(Action::Redirect(redirect_to(rd)))
    } else {
        r.direct_response.as_ref().map(|d| {
            Action::DirectResponse(xroute::DirectResponseAction {
                status: d.status.into(),
                body: d.body.as_ref().map(|b| xcore::DataSource {
                    specifier: Some(xcore::data_source::Specifier::InlineString(b.clone())),
                }),
                body_format: None,
            })
        })
    };
    xroute::Route {
        name: r.name.clone().unwrap_or_default(),
        r#match: Some(match_to(&r.route_match)),
        action,
        request_headers_to_add: adds_to(&r.request_headers),
        request_headers_to_remove: r.request_headers.remove.clone(),
        response_headers_to_add: adds_to(&r.response_headers),
        response_headers_to_remove: r.response_headers.remove.clone(),
        typed_per_filter_config: filters::per_filter_config_to(&r.fault, &r.rate_limit),
        ..Default::default()
    }
}

fn match_to(m: &model::RouteMatch) -> xroute::RouteMatch {
    use xmatcher::string_matcher::MatchPattern as P;
    use xroute::header_matcher::HeaderMatchSpecifier as H;
    use xroute::query_parameter_matcher::QueryParameterMatchSpecifier as Q;
    use xroute::route_match::PathSpecifier;
    let path_specifier = if let Some(s) = &m.prefix {
        Some(PathSpecifier::Prefix(s.clone()))
    } else if let Some(s) = &m.path {
        Some(PathSpecifier::Path(s.clone()))
    } else {
        m.regex
            .as_ref()
            .map(|r| PathSpecifier::SafeRegex(regex_to(r)))
    };
    let headers = m
        .headers
        .iter()
        .map(|h| {
            let spec = if let Some(s) = &h.exact {
                H::StringMatch(string_matcher(P::Exact(s.clone())))
            } else if let Some(s) = &h.prefix {
                H::StringMatch(string_matcher(P::Prefix(s.clone())))
            } else if let Some(r) = &h.regex {
                H::StringMatch(string_matcher(P::SafeRegex(regex_to(r))))
            } else {
                H::PresentMatch(h.present.unwrap_or(true))
            };
            xroute::HeaderMatcher {
                name: h.name.clone(),
                invert_match: h.invert,
                header_match_specifier: Some(spec),
                ..Default::default()
            }
        })
        .collect();
    let query_parameters = m
        .query_parameters
        .iter()
        .map(|q| {
            let spec = if let Some(s) = &q.exact {
                Q::StringMatch(string_matcher(P::Exact(s.clone())))
            } else if let Some(r) = &q.regex {
                Q::StringMatch(string_matcher(P::SafeRegex(regex_to(r))))
            } else {
                Q::PresentMatch(q.present.unwrap_or(true))
            };
            xroute::QueryParameterMatcher {
                name: q.name.clone(),
                query_parameter_match_specifier: Some(spec),
            }
        })
        .collect();
    xroute::RouteMatch {
        path_specifier,
        case_sensitive: (!m.case_sensitive).then_some(false),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn action_to(a: &model::RouteAction) -> xroute::RouteAction {
    use xroute::route_action::hash_policy::{
        ConnectionProperties, Cookie, Header, PolicySpecifier,
    };
    use xroute::route_action::{ClusterSpecifier, HashPolicy, HostRewriteSpecifier};
    let cluster_specifier = match &a.cluster {
        Some(c) => ClusterSpecifier::Cluster(c.clone()),
        None => ClusterSpecifier::WeightedClusters(xroute::WeightedCluster {
            clusters: a
                .weighted_clusters
                .iter()
                .map(|w| xroute::weighted_cluster::ClusterWeight {
                    name: w.name.clone(),
                    weight: Some(w.weight),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let hash_policy = a
        .hash_policy
        .iter()
        .map(|h| {
            let spec = if let Some(n) = &h.header {
                PolicySpecifier::Header(Header {
                    header_name: n.clone(),
                    regex_rewrite: None,
                })
            } else if let Some(n) = &h.cookie {
                PolicySpecifier::Cookie(Cookie {
                    name: n.clone(),
                    ..Default::default()
                })
            } else {
                PolicySpecifier::ConnectionProperties(ConnectionProperties {
                    source_ip: h.source_ip,
                })
            };
            HashPolicy {
                policy_specifier: Some(spec),
                terminal: true,
            }
        })
        .collect();
    xroute::RouteAction {
        cluster_specifier: Some(cluster_specifier),
        prefix_rewrite: a.prefix_rewrite.clone().unwrap_or_default(),
        regex_rewrite: a
            .regex_rewrite
            .as_ref()
            .map(|r| xmatcher::RegexMatchAndSubstitute {
                pattern: Some(regex_to(&r.pattern)),
                substitution: r.substitution.clone(),
            }),
        host_rewrite_specifier: a
            .host_rewrite
            .as_ref()
            .map(|h| HostRewriteSpecifier::HostRewriteLiteral(h.clone())),
        timeout: Some(dur_to(a.timeout)),
        hash_policy,
        retry_policy: a.retry.as_ref().map(super::retry::retry_to),
        priority: super::upstream::priority_to(a.priority),
        ..Default::default()
    }
}

fn redirect_to(r: &model::RedirectAction) -> xroute::RedirectAction {
    use xroute::redirect_action::{
        PathRewriteSpecifier, RedirectResponseCode as C, SchemeRewriteSpecifier,
    };
    let code = match r.response_code {
        302 => C::Found,
        303 => C::SeeOther,
        307 => C::TemporaryRedirect,
        308 => C::PermanentRedirect,
        _ => C::MovedPermanently,
    };
    let path_rewrite_specifier = if let Some(p) = &r.path {
        Some(PathRewriteSpecifier::PathRedirect(p.clone()))
    } else {
        r.prefix_rewrite
            .as_ref()
            .map(|p| PathRewriteSpecifier::PrefixRewrite(p.clone()))
    };
    xroute::RedirectAction {
        scheme_rewrite_specifier: r
            .scheme
            .as_ref()
            .map(|s| SchemeRewriteSpecifier::SchemeRedirect(s.clone())),
        host_redirect: r.host.clone().unwrap_or_default(),
        port_redirect: r.port.map(u32::from).unwrap_or(0),
        path_rewrite_specifier,
        response_code: code as i32,
        strip_query: r.strip_query,
    }
}
