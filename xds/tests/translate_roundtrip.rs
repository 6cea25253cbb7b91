//! Property test: every valid model resource survives
//! model -> xDS -> bytes -> xDS -> model unchanged (listeners compared after
//! `Listener::normalize`; endpoints come back grouped by priority, so the
//! generators emit them in ascending priority).

use legate_xds::duration::Dur;
use legate_xds::model::*;
use legate_xds::translate::{self, Resource};
use legate_xds::validate::validate;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use std::time::Duration;

// ---------------------------------------------------------------------------
// Leaves

fn ident() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,8}"
}

fn header_name() -> impl Strategy<Value = String> {
    "x-[a-z0-9]{1,8}"
}

fn header_value() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn dur() -> impl Strategy<Value = Dur> {
    prop_oneof![
        (0u64..100_000).prop_map(Dur::from_millis),
        (0u64..1_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Dur(Duration::new(s, n))),
    ]
}

fn positive_dur() -> impl Strategy<Value = Dur> {
    dur().prop_map(|d| {
        if d.get() < Duration::from_millis(1) {
            Dur::from_millis(1)
        } else {
            d
        }
    })
}

fn path() -> impl Strategy<Value = String> {
    "/[a-z0-9/._-]{0,10}"
}

fn regex() -> impl Strategy<Value = String> {
    select(vec![
        "/api/.*",
        "^/v[0-9]+/(.*)$",
        "/u/([0-9]+)",
        r".*\.png",
        "/a|/b",
        "[a-z]+",
    ])
    .prop_map(String::from)
}

fn host() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,6}(\\.[a-z][a-z0-9]{0,5}){0,2}"
}

// ---------------------------------------------------------------------------
// Routes

fn header_value_option() -> impl Strategy<Value = HeaderValueOption> {
    (header_name(), header_value(), any::<bool>()).prop_map(|(name, value, append)| {
        HeaderValueOption {
            name,
            value,
            append,
        }
    })
}

fn mutation(request: bool) -> impl Strategy<Value = HeaderMutation> {
    let _ = request; // generated names are never `host`
    (vec(header_value_option(), 0..3), vec(header_name(), 0..3))
        .prop_map(|(add, remove)| HeaderMutation { add, remove })
}

fn header_matcher() -> impl Strategy<Value = HeaderMatcher> {
    (
        header_name(),
        0..4u8,
        header_value(),
        regex(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, kind, value, re, present, invert)| {
            let mut m = HeaderMatcher {
                name,
                invert,
                ..Default::default()
            };
            match kind {
                0 => m.exact = Some(value),
                1 => m.prefix = Some(value),
                2 => m.regex = Some(re),
                _ => m.present = Some(present),
            }
            m
        })
}

fn query_matcher() -> impl Strategy<Value = QueryParameterMatcher> {
    (ident(), 0..3u8, header_value(), regex(), any::<bool>()).prop_map(
        |(name, kind, value, re, present)| {
            let mut m = QueryParameterMatcher {
                name,
                ..Default::default()
            };
            match kind {
                0 => m.exact = Some(value),
                1 => m.regex = Some(re),
                _ => m.present = Some(present),
            }
            m
        },
    )
}

fn route_match() -> impl Strategy<Value = RouteMatch> {
    (
        0..3u8,
        prop_oneof![Just(String::new()), path()],
        path(),
        regex(),
        any::<bool>(),
        vec(header_matcher(), 0..3),
        vec(query_matcher(), 0..3),
    )
        .prop_map(
            |(kind, prefix, p, re, case_sensitive, headers, query_parameters)| {
                let mut m = RouteMatch {
                    case_sensitive,
                    headers,
                    query_parameters,
                    ..Default::default()
                };
                match kind {
                    0 => m.prefix = Some(prefix),
                    1 => m.path = Some(p),
                    _ => m.regex = Some(re),
                }
                m
            },
        )
}

fn hash_policy() -> impl Strategy<Value = HashPolicy> {
    prop_oneof![
        header_name().prop_map(|h| HashPolicy {
            header: Some(h),
            ..Default::default()
        }),
        "[a-z_]{1,8}".prop_map(|c| HashPolicy {
            cookie: Some(c),
            ..Default::default()
        }),
        Just(HashPolicy {
            source_ip: true,
            ..Default::default()
        }),
    ]
}

/// A route action valid for a match that is (`regex_match`) or is not a
/// regex match.
fn thresholds() -> impl Strategy<Value = Thresholds> {
    (
        0..5000u32,
        0..5000u32,
        0..5000u32,
        0..3u8,
        0..20u32,
        select(vec![0.0, 12.5, 20.0, 100.0]),
    )
        .prop_map(|(c, p, r, retries, n, pct)| Thresholds {
            max_connections: c,
            max_pending_requests: p,
            max_requests: r,
            max_retries: (retries == 1).then_some(n),
            retry_budget: (retries == 2).then_some(RetryBudget {
                budget_percent: pct,
                min_retry_concurrency: n,
            }),
        })
}

fn circuit_breakers() -> impl Strategy<Value = CircuitBreakers> {
    prop_oneof![
        Just(CircuitBreakers::default()),
        (thresholds(), option::of(thresholds())).prop_map(|(default, high)| CircuitBreakers {
            default,
            high: high.unwrap_or_default(),
        }),
    ]
}

fn outlier_detection() -> impl Strategy<Value = OutlierDetection> {
    (
        (1..20u32, 1..20u32, 1..20u32, any::<bool>()),
        (positive_dur(), positive_dur(), positive_dur(), dur()),
        (0..=100u32, 0..=100u32, 0..=100u32, 0..=100u32),
        (0..=100u32, 0..=100u32, 0..=100u32, 0..=100u32),
        (1..10u32, 1..500u32, 1..5000u32, 0..=100u32),
        (1..10u32, 1..500u32, any::<bool>()),
    )
        .prop_map(
            |(
                (c5, cg, cl, split),
                (interval, base, max, jitter),
                (max_pct, e5, eg, el),
                (esr, elsr, efp, efpl),
                (srh, srv, srf, fpt),
                (fph, fpv, one),
            )| OutlierDetection {
                consecutive_5xx: c5,
                consecutive_gateway_failure: cg,
                consecutive_local_origin_failure: cl,
                split_external_local_origin_errors: split,
                interval,
                base_ejection_time: base,
                max_ejection_time: max,
                max_ejection_time_jitter: jitter,
                max_ejection_percent: max_pct,
                always_eject_one_host: one,
                enforcing_consecutive_5xx: e5,
                enforcing_consecutive_gateway_failure: eg,
                enforcing_consecutive_local_origin_failure: el,
                enforcing_success_rate: esr,
                enforcing_local_origin_success_rate: elsr,
                enforcing_failure_percentage: efp,
                enforcing_failure_percentage_local_origin: efpl,
                success_rate_minimum_hosts: srh,
                success_rate_request_volume: srv,
                success_rate_stdev_factor: srf,
                failure_percentage_threshold: fpt,
                failure_percentage_minimum_hosts: fph,
                failure_percentage_request_volume: fpv,
            },
        )
}

fn payload() -> impl Strategy<Value = Payload> {
    prop_oneof![
        "[ -~]{1,8}".prop_map(|t| Payload::text(&t)),
        "([0-9a-fA-F]{2}){1,6}".prop_map(|h| Payload::hex(&h)),
    ]
}

fn http_health_check() -> impl Strategy<Value = HttpHealthCheck> {
    (
        path(),
        option::of(host()),
        vec(header_value_option(), 0..3),
        vec((100..599u16, 1..100u16), 0..3),
        select(vec![HealthCheckCodec::Http1, HealthCheckCodec::Http2]),
    )
        .prop_map(
            |(path, host, request_headers_to_add, ranges, codec)| HttpHealthCheck {
                path,
                host,
                request_headers_to_add,
                expected_statuses: ranges
                    .into_iter()
                    .map(|(start, len)| StatusRange {
                        start,
                        end: (start + len).min(600),
                    })
                    .collect(),
                codec,
            },
        )
}

fn health_check() -> impl Strategy<Value = HealthCheck> {
    let checker = prop_oneof![
        http_health_check().prop_map(|h| (Some(h), None, None)),
        (option::of(payload()), vec(payload(), 0..3)).prop_map(|(send, receive)| (
            None,
            Some(TcpHealthCheck { send, receive }),
            None
        )),
        (
            prop_oneof![Just(String::new()), "[a-z.]{1,12}"],
            option::of(host())
        )
            .prop_map(|(service_name, authority)| (
                None,
                None,
                Some(GrpcHealthCheck {
                    service_name,
                    authority
                })
            )),
    ];
    (
        (positive_dur(), positive_dur(), dur(), dur(), 0..200u32),
        (1..10u32, 1..10u32, any::<bool>()),
        (
            option::of(positive_dur()),
            option::of(positive_dur()),
            option::of(positive_dur()),
        ),
        checker,
    )
        .prop_map(
            |(
                (timeout, interval, initial_jitter, interval_jitter, interval_jitter_percent),
                (unhealthy_threshold, healthy_threshold, reuse_connection),
                (unhealthy_interval, unhealthy_edge_interval, healthy_edge_interval),
                (http, tcp, grpc),
            )| HealthCheck {
                timeout,
                interval,
                initial_jitter,
                interval_jitter,
                interval_jitter_percent,
                unhealthy_threshold,
                healthy_threshold,
                unhealthy_interval,
                unhealthy_edge_interval,
                healthy_edge_interval,
                reuse_connection,
                http,
                tcp,
                grpc,
            },
        )
}

fn retry() -> impl Strategy<Value = RetryPolicy> {
    (
        proptest::sample::subsequence(RetryOn::ALL.to_vec(), 1..5),
        0..5u32,
        option::of(1..5000u64),
        vec(400..600u16, 1..3),
        1..500u64,
        option::of(0..5000u64),
        any::<bool>(),
    )
        .prop_map(
            |(on, num_retries, per_try, codes, base, max, previous)| RetryPolicy {
                retriable_status_codes: if on.contains(&RetryOn::RetriableStatusCodes) {
                    codes
                } else {
                    Vec::new()
                },
                retry_on: on,
                num_retries,
                per_try_timeout: per_try.map(Dur::from_millis),
                backoff_base: Dur::from_millis(base),
                backoff_max: max.map(|m| Dur::from_millis(base + m)),
                retry_previous_hosts: previous,
            },
        )
}

fn route_action(regex_match: bool) -> impl Strategy<Value = RouteAction> {
    let weighted = vec((ident(), 0..100u32), 1..4).prop_map(|ws| {
        ws.into_iter()
            .enumerate()
            .map(|(i, (name, weight))| ClusterWeight {
                name: format!("{name}-{i}"),
                weight: if i == 0 { weight + 1 } else { weight },
            })
            .collect::<Vec<_>>()
    });
    let rewrites = select(vec![
        ("^/(a+)/(.*)$", r"/x/\1/\2"),
        ("/old", "/new"),
        ("(.*)", r"\1\\"),
    ]);
    (
        option::of(ident()),
        weighted,
        0..3u8,
        path(),
        rewrites,
        option::of(prop_oneof![
            host(),
            (host(), 1..65535u16).prop_map(|(h, p)| format!("{h}:{p}"))
        ]),
        dur(),
        (
            vec(hash_policy(), 0..3),
            option::of(retry()),
            select(vec![RoutingPriority::Default, RoutingPriority::High]),
        ),
    )
        .prop_map(
            move |(
                cluster,
                weighted,
                rewrite,
                prefix,
                (pattern, subst),
                host_rewrite,
                timeout,
                (hash_policy, retry, priority),
            )| {
                let mut a = RouteAction {
                    host_rewrite,
                    timeout,
                    hash_policy,
                    retry,
                    priority,
                    ..Default::default()
                };
                match cluster {
                    Some(c) => a.cluster = Some(c),
                    None => a.weighted_clusters = weighted,
                }
                match rewrite {
                    0 if !regex_match => a.prefix_rewrite = Some(prefix),
                    1 => {
                        a.regex_rewrite = Some(RegexRewrite {
                            pattern: pattern.into(),
                            substitution: subst.into(),
                        })
                    }
                    _ => {}
                }
                a
            },
        )
}

fn redirect(regex_match: bool) -> impl Strategy<Value = RedirectAction> {
    (
        option::of(select(vec!["http", "https"]).prop_map(String::from)),
        option::of(host()),
        option::of(1..65535u16),
        0..3u8,
        path(),
        select(vec![301u16, 302, 303, 307, 308]),
        any::<bool>(),
    )
        .prop_map(
            move |(scheme, host, port, kind, p, response_code, strip_query)| {
                let mut r = RedirectAction {
                    scheme,
                    host,
                    port,
                    response_code,
                    strip_query,
                    ..Default::default()
                };
                match kind {
                    0 => r.path = Some(p),
                    1 if !regex_match => r.prefix_rewrite = Some(p),
                    _ => {}
                }
                r
            },
        )
}

fn percent() -> impl Strategy<Value = legate_xds::model::Percent> {
    (
        prop_oneof![Just(100u32), Just(10_000), Just(1_000_000)],
        0..=1_000_000u32,
    )
        .prop_map(|(denominator, n)| legate_xds::model::Percent {
            numerator: n % (denominator + 1),
            denominator,
        })
}

fn fault() -> impl Strategy<Value = legate_xds::model::FaultInjection> {
    use legate_xds::model::{FaultAbort, FaultDelay, FaultInjection};
    let delay = (option::of(1..10_000u64), percent()).prop_map(|(ms, percent)| FaultDelay {
        fixed: ms.map(Dur::from_millis),
        from_header: ms.is_none(),
        percent,
    });
    let abort = (
        0..3u8,
        200..600u16,
        0..17u32,
        percent(),
        option::of(ident()),
    )
        .prop_map(|(kind, http, grpc, percent, body)| FaultAbort {
            http_status: (kind == 0).then_some(http),
            grpc_status: (kind == 1).then_some(grpc),
            from_header: kind == 2,
            percent,
            body,
        });
    (option::of(delay), option::of(abort), option::of(0..100u32))
        .prop_filter("a delay or an abort", |(d, a, _)| {
            d.is_some() || a.is_some()
        })
        .prop_map(|(delay, abort, max_active_faults)| FaultInjection {
            delay,
            abort,
            max_active_faults,
        })
}

fn rate_limit() -> impl Strategy<Value = LocalRateLimit> {
    (
        (0..1000u32, 1..100u32, 50..10_000u64, 400..600u16),
        (percent(), percent(), any::<bool>()),
        (mutation(false), mutation(true)),
    )
        .prop_map(
            |((max_tokens, tokens_per_fill, ms, status), (enabled, enforced, x), (resp, req))| {
                LocalRateLimit {
                    max_tokens,
                    tokens_per_fill,
                    fill_interval: Dur::from_millis(ms),
                    status,
                    enabled,
                    enforced,
                    x_ratelimit_headers: x,
                    response_headers: resp.add,
                    request_headers_when_not_enforced: req.add,
                }
            },
        )
}

fn route() -> impl Strategy<Value = Route> {
    (
        route_match(),
        option::of(ident()),
        mutation(true),
        mutation(false),
        0..3u8,
        option::of(fault()),
        option::of(rate_limit()),
    )
        .prop_flat_map(|(m, name, req, resp, kind, fault, rate_limit)| {
            let regex_match = m.regex.is_some();
            let base = Route {
                name,
                route_match: m,
                request_headers: req,
                response_headers: resp,
                fault,
                rate_limit,
                ..Default::default()
            };
            match kind {
                0 => route_action(regex_match)
                    .prop_map(move |a| Route {
                        route: Some(a),
                        ..base.clone()
                    })
                    .boxed(),
                1 => redirect(regex_match)
                    .prop_map(move |r| Route {
                        redirect: Some(r),
                        ..base.clone()
                    })
                    .boxed(),
                _ => (200..=599u16, option::of("[ -~]{0,20}"))
                    .prop_map(move |(status, body)| Route {
                        direct_response: Some(DirectResponse { status, body }),
                        ..base.clone()
                    })
                    .boxed(),
            }
        })
}

fn route_config(name: BoxedStrategy<String>) -> impl Strategy<Value = RouteConfiguration> {
    (
        name,
        vec(
            (
                ident(),
                1..3usize,
                vec(route(), 1..4),
                mutation(true),
                mutation(false),
                option::of(rate_limit()),
                (option::of(retry()), any::<bool>()),
            ),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(|(name, vhs, catch_all)| {
            let n = vhs.len();
            let virtual_hosts = vhs
                .into_iter()
                .enumerate()
                .map(
                    |(i, (vname, ndomains, routes, req, resp, rate_limit, (retry, attempts)))| {
                        // Domains are unique across the table.
                        let mut domains: Vec<String> = (0..ndomains)
                            .map(|k| match k {
                                0 => format!("h{i}.example.com"),
                                _ => format!("*.h{i}-{k}.example.org"),
                            })
                            .collect();
                        if catch_all && i == n - 1 {
                            domains.push("*".into());
                        }
                        VirtualHost {
                            name: vname,
                            domains,
                            routes,
                            request_headers: req,
                            response_headers: resp,
                            rate_limit,
                            retry,
                            include_attempt_count: attempts,
                        }
                    },
                )
                .collect();
            RouteConfiguration {
                name,
                virtual_hosts,
            }
        })
}

// ---------------------------------------------------------------------------
// Listeners

fn hcm() -> impl Strategy<Value = HttpConnectionManager> {
    (
        prop_oneof![
            route_config(prop_oneof![Just(String::new()), ident()].boxed())
                .prop_map(|rc| (Some(rc), None)),
            ident().prop_map(|n| (None, Some(n))),
        ],
        8..=8192u32,
        1..=10_000u32,
        dur(),
        1..100_000u32,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |((route_config, rds), kb, count, timeout, streams, gen_id, strip, xff)| {
                HttpConnectionManager {
                    route_config,
                    rds,
                    max_request_headers_kb: kb,
                    max_request_headers_count: count,
                    request_headers_timeout: timeout,
                    http2_max_concurrent_streams: streams,
                    generate_request_id: gen_id,
                    strip_any_host_port: strip,
                    append_x_forwarded_for: xff,
                }
            },
        )
}

fn tcp() -> impl Strategy<Value = TcpProxy> {
    (ident(), dur()).prop_map(|(cluster, idle_timeout)| TcpProxy {
        cluster,
        idle_timeout,
    })
}

fn chain() -> impl Strategy<Value = FilterChain> {
    (
        option::of(ident()),
        prop_oneof![
            hcm().prop_map(|h| (Some(h), None)),
            tcp().prop_map(|t| (None, Some(t)))
        ],
    )
        .prop_map(|(name, (http, tcp))| FilterChain {
            name,
            http,
            tcp,
            ..Default::default()
        })
}

fn listener() -> impl Strategy<Value = Listener> {
    (
        ident(),
        select(vec![
            "127.0.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "10.1.2.3",
            "fd00::7",
        ]),
        0..=65535u16,
        vec(chain(), 1..4),
        any::<bool>(),
        1..60_000u16,
        any::<bool>(),
    )
        .prop_map(
            |(name, ip, port, mut chains, catch_all, base_port, shorthand)| {
                let n = chains.len();
                // Distinct destination ports; only the last chain may match
                // everything.
                for (i, c) in chains.iter_mut().enumerate() {
                    if !(catch_all && i == n - 1) {
                        c.filter_chain_match.destination_port = Some(base_port + i as u16);
                    }
                }
                let address = host_port(ip, port);
                let mut l = Listener {
                    name,
                    address,
                    ..Default::default()
                };
                if shorthand && n == 1 && catch_all && chains[0].name.is_none() {
                    let c = chains.remove(0);
                    l.http = c.http;
                    l.tcp = c.tcp;
                } else {
                    l.filter_chains = chains;
                }
                l
            },
        )
}

fn host_port(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

// ---------------------------------------------------------------------------
// Clusters

fn health() -> impl Strategy<Value = HealthStatus> {
    select(vec![
        HealthStatus::Unknown,
        HealthStatus::Healthy,
        HealthStatus::Unhealthy,
        HealthStatus::Draining,
        HealthStatus::Timeout,
        HealthStatus::Degraded,
    ])
}

fn endpoints(discovery: DiscoveryType) -> impl Strategy<Value = Vec<Endpoint>> {
    let ip = prop_oneof![
        (any::<u8>(), any::<u8>()).prop_map(|(a, b)| format!("10.0.{a}.{b}")),
        any::<u16>().prop_map(|x| format!("[fd00::{x:x}]")),
    ];
    let address = match discovery {
        DiscoveryType::StrictDns => {
            prop_oneof![ip.clone(), host().prop_map(|h| format!("{h}.svc"))].boxed()
        }
        _ => ip.boxed(),
    };
    vec(
        (
            (address, 0..=65535u16).prop_map(|(a, p)| format!("{a}:{p}")),
            1..1000u32,
            0..4u32,
            health(),
        ),
        0..6,
    )
    .prop_map(|eps| {
        let mut eps: Vec<Endpoint> = eps
            .into_iter()
            .map(|(address, weight, priority, health_status)| Endpoint {
                address,
                weight,
                priority,
                health_status,
            })
            .collect();
        eps.sort_by_key(|e| e.priority);
        eps
    })
}

fn cluster() -> impl Strategy<Value = Cluster> {
    select(vec![
        DiscoveryType::Static,
        DiscoveryType::StrictDns,
        DiscoveryType::Eds,
    ])
    .prop_flat_map(|discovery| {
        (
            ident(),
            option::of(ident()),
            endpoints(discovery),
            select(vec![
                LbPolicy::RoundRobin,
                LbPolicy::LeastRequest,
                LbPolicy::Random,
                LbPolicy::RingHash,
            ]),
            1..=8_388_608u32,
            select(vec![
                UpstreamProtocol::Http1,
                UpstreamProtocol::Http2,
                UpstreamProtocol::UseDownstream,
            ]),
            1..10_000u32,
            (positive_dur(), dur(), positive_dur(), 0..100_000u32),
            (
                circuit_breakers(),
                option::of(outlier_detection()),
                select(vec![0.0, 25.5, 50.0, 100.0]),
                vec(health_check(), 0..3),
            ),
        )
            .prop_map(
                move |(
                    name,
                    service,
                    endpoints,
                    lb_policy,
                    ring,
                    protocol,
                    streams,
                    (connect_timeout, idle_timeout, dns_refresh_rate, max_idle),
                    (circuit_breakers, outlier_detection, healthy_panic_threshold, health_checks),
                )| Cluster {
                    name,
                    discovery,
                    eds_service_name: if discovery == DiscoveryType::Eds {
                        service
                    } else {
                        None
                    },
                    endpoints,
                    lb_policy,
                    protocol,
                    connect_timeout,
                    idle_timeout,
                    dns_refresh_rate,
                    // Carried only where it means something.
                    http2_max_concurrent_streams: if protocol == UpstreamProtocol::Http1 {
                        100
                    } else {
                        streams
                    },
                    max_idle_connections_per_endpoint: max_idle,
                    ring_size: if lb_policy == LbPolicy::RingHash {
                        ring
                    } else {
                        1024
                    },
                    circuit_breakers,
                    outlier_detection,
                    healthy_panic_threshold,
                    health_checks,
                },
            )
    })
}

// ---------------------------------------------------------------------------
// Properties

fn dynamic() -> Dynamic {
    Dynamic {
        servers: vec!["xds.local:15010".into()],
        node: Node {
            id: "n".into(),
            ..Default::default()
        },
        api: XdsApi::Sotw,
        initial_fetch_timeout: Dur::from_secs(15),
    }
}

fn assert_valid(config: Config) {
    let errors = validate(&config);
    assert!(
        errors.is_empty(),
        "generator made an invalid model: {errors:#?}"
    );
}

fn decode<M: prost::Name>(type_url: &str, m: &M) -> (String, Resource) {
    let any = translate::to_any(m);
    // Through bytes, as a control plane would send it.
    let bytes = prost::Message::encode_to_vec(&any);
    let any: prost_types::Any = prost::Message::decode(bytes.as_slice()).unwrap();
    assert_eq!(any.type_url, type_url);
    match translate::decode(type_url, &any) {
        Ok(r) => r,
        Err(e) => panic!("refused: {e}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn listeners_round_trip(l in listener()) {
        let mut expect = l.clone();
        expect.normalize();
        assert_valid(Config { dynamic: Some(dynamic()), listeners: vec![expect.clone()], ..Default::default() });
        let (name, got) = decode(translate::LISTENER_TYPE, &translate::listener_to_xds(&l));
        prop_assert_eq!(name, l.name.clone());
        prop_assert_eq!(got, Resource::Listener(expect));
    }

    #[test]
    fn route_configs_round_trip(rc in route_config(ident().boxed())) {
        assert_valid(Config { dynamic: Some(dynamic()), route_configs: vec![rc.clone()], ..Default::default() });
        let (name, got) = decode(translate::ROUTE_TYPE, &translate::route_config_to_xds(&rc));
        prop_assert_eq!(name, rc.name.clone());
        prop_assert_eq!(got, Resource::Route(rc));
    }

    #[test]
    fn clusters_round_trip(c in cluster()) {
        assert_valid(Config { dynamic: Some(dynamic()), clusters: vec![c.clone()], ..Default::default() });
        let (xc, cla) = translate::cluster_to_xds(&c);
        let (name, got) = decode(translate::CLUSTER_TYPE, &xc);
        prop_assert_eq!(&name, &c.name);
        let Resource::Cluster(mut got) = got else { panic!("not a cluster: {got:?}") };
        match (c.discovery, cla) {
            (DiscoveryType::Eds, Some(cla)) => {
                prop_assert!(got.endpoints.is_empty());
                let (service, la) = decode(translate::ENDPOINT_TYPE, &cla);
                let Resource::Endpoints(la) = la else { panic!("not endpoints: {la:?}") };
                let want = c.eds_service_name.clone().unwrap_or_else(|| c.name.clone());
                prop_assert_eq!(&service, &want);
                prop_assert_eq!(&la.cluster_name, &want);
                got.endpoints = la.endpoints;
            }
            (DiscoveryType::Eds, None) => panic!("an eds cluster without its assignment"),
            (_, cla) => prop_assert!(cla.is_none()),
        }
        prop_assert_eq!(got, c);
    }
}
