//! Wire compatibility of Legate's xDS wire types (`legate_xds::wire`, generated
//! from `proto/`) with Envoy's own v3 protos (the `envoy-types` crate): core,
//! type, discovery, endpoint, cluster, upstream HTTP options and TLS messages.
//!
//! For every message we define, the test builds a value of OUR type with every
//! field set to a distinct, non-default value (see [`G`]), encodes it, decodes
//! the bytes as the `envoy-types` message, compares field by field (see
//! [`Same`]: every field of our struct is destructured, so a field missing from
//! a comparison is a compile error, and every leaf must be non-default), then
//! encodes the `envoy-types` value, decodes it as ours and checks that nothing
//! was lost. Every oneof member is exercised by building each message with
//! several variant selectors `v`.

// Envoy marks some of the fields we keep (e.g. `HeaderValueOption.append`,
// `ConfigSource.path`) deprecated; envoy-types carries that as `#[deprecated]`.
#![allow(deprecated)]

use std::collections::HashMap;
use std::fmt::Debug;

use prost::{Message, Name};

use envoy_types::pb as ew;
use legate_xds::wire as ow;

use ew::envoy::config::cluster::v3 as ecl;
use ew::envoy::config::core::v3 as ec;
use ew::envoy::config::endpoint::v3 as ee;
use ew::envoy::extensions::transport_sockets::tls::v3 as etls;
use ew::envoy::extensions::upstreams::http::v3 as eu;
use ew::envoy::service::discovery::v3 as ed;
use ew::envoy::r#type::matcher::v3 as em;
use ew::envoy::r#type::v3 as et;
use ew::google::protobuf as epb;

use ow::envoy::config::cluster::v3 as ocl;
use ow::envoy::config::core::v3 as oc;
use ow::envoy::config::endpoint::v3 as oe;
use ow::envoy::extensions::transport_sockets::tls::v3 as otls;
use ow::envoy::extensions::upstreams::http::v3 as ou;
use ow::envoy::service::discovery::v3 as od;
use ow::envoy::r#type::matcher::v3 as om;
use ow::envoy::r#type::v3 as ot;

// ---------------------------------------------------------------------------
// Field-by-field comparison of our value with the envoy-types value.
// ---------------------------------------------------------------------------

/// `ours.same(&theirs, path)` asserts that the envoy-types value `theirs`
/// carries exactly what `ours` holds, and that `ours` holds no default leaf
/// (so every field really went over the wire).
trait Same<T> {
    fn same(&self, theirs: &T, path: &str);
}

macro_rules! same_leaf {
    ($($ty:ty),* $(,)?) => {$(
        impl Same<$ty> for $ty {
            fn same(&self, theirs: &$ty, path: &str) {
                assert!(
                    *self != <$ty>::default(),
                    "{path}: our value is the default ({self:?}); the test must set every field"
                );
                assert_eq!(self, theirs, "{path}");
            }
        }
    )*};
}
same_leaf!(String, u8, u32, u64, i32, i64, f64, bool);

impl<A: Same<B>, B> Same<Vec<B>> for Vec<A> {
    fn same(&self, theirs: &Vec<B>, path: &str) {
        assert!(!self.is_empty(), "{path}: our list is empty");
        assert_eq!(self.len(), theirs.len(), "{path}: length");
        for (i, (a, b)) in self.iter().zip(theirs).enumerate() {
            a.same(b, &format!("{path}[{i}]"));
        }
    }
}

impl<A: Same<B>, B> Same<Option<B>> for Option<A> {
    fn same(&self, theirs: &Option<B>, path: &str) {
        match (self, theirs) {
            (Some(a), Some(b)) => a.same(b, path),
            (None, _) => panic!("{path}: our value is None; the test must set every field"),
            (Some(_), None) => panic!("{path}: missing from the envoy-types value"),
        }
    }
}

impl<A: Same<B>, B> Same<HashMap<String, B>> for HashMap<String, A> {
    fn same(&self, theirs: &HashMap<String, B>, path: &str) {
        assert!(!self.is_empty(), "{path}: our map is empty");
        assert_eq!(self.len(), theirs.len(), "{path}: size");
        for (k, a) in self {
            let b = theirs
                .get(k)
                .unwrap_or_else(|| panic!("{path}: key {k:?} missing"));
            a.same(b, &format!("{path}[{k:?}]"));
        }
    }
}

// Wrapper types: prost maps them to plain `Option<scalar>`, envoy-types keeps
// the wrapper message. `Some(false)` / `Some(0)` are legitimate non-defaults.
impl Same<epb::UInt32Value> for u32 {
    fn same(&self, theirs: &epb::UInt32Value, path: &str) {
        assert_eq!(*self, theirs.value, "{path}");
    }
}
impl Same<epb::UInt64Value> for u64 {
    fn same(&self, theirs: &epb::UInt64Value, path: &str) {
        assert_eq!(*self, theirs.value, "{path}");
    }
}
impl Same<epb::BoolValue> for bool {
    fn same(&self, theirs: &epb::BoolValue, path: &str) {
        assert_eq!(*self, theirs.value, "{path}");
    }
}

impl Same<epb::Duration> for prost_types::Duration {
    fn same(&self, theirs: &epb::Duration, path: &str) {
        assert!(
            self.seconds != 0 && self.nanos != 0,
            "{path}: set a duration"
        );
        assert_eq!(
            (self.seconds, self.nanos),
            (theirs.seconds, theirs.nanos),
            "{path}"
        );
    }
}

impl Same<epb::Any> for prost_types::Any {
    fn same(&self, theirs: &epb::Any, path: &str) {
        assert!(
            !self.type_url.is_empty() && !self.value.is_empty(),
            "{path}: set an Any"
        );
        assert_eq!(self.type_url, theirs.type_url, "{path}.type_url");
        assert_eq!(self.value, theirs.value, "{path}.value");
    }
}

impl Same<epb::Struct> for prost_types::Struct {
    fn same(&self, theirs: &epb::Struct, path: &str) {
        assert!(!self.fields.is_empty(), "{path}: set a Struct");
        // Both are google.protobuf.Struct; compare through the wire.
        let theirs = prost_types::Struct::decode(&*theirs.encode_to_vec()).expect("Struct");
        assert_eq!(self, &theirs, "{path}");
    }
}

/// `same_msg!(Ours => Theirs { field, ... })`: the field list must name every
/// field of `Ours` (it is destructured exhaustively).
macro_rules! same_msg {
    ($($ours:ty => $theirs:ty { $($f:ident),* $(,)? })*) => {$(
        impl Same<$theirs> for $ours {
            #[allow(unused_variables)]
            fn same(&self, theirs: &$theirs, path: &str) {
                let Self { $($f),* } = self;
                $( $f.same(&theirs.$f, &format!("{path}.{}", stringify!($f))); )*
            }
        }
    )*};
}

/// `same_oneof!(Ours => Theirs { Variant, ... })`: the list must name every
/// member of our oneof (matched exhaustively).
macro_rules! same_oneof {
    ($($ours:ty => $theirs:ty { $($v:ident),* $(,)? })*) => {$(
        impl Same<$theirs> for $ours {
            fn same(&self, theirs: &$theirs, path: &str) {
                type T = $theirs;
                #[allow(clippy::match_single_binding)]
                match self {
                    $( Self::$v(_) => {} )*
                }
                #[allow(unreachable_patterns)]
                match (self, theirs) {
                    $( (Self::$v(a), T::$v(b)) => a.same(b, &format!("{path}::{}", stringify!($v))), )*
                    _ => panic!("{path}: oneof member differs: ours {self:?}, envoy-types {theirs:?}"),
                }
            }
        }
    )*};
}

same_msg! {
    // xds.type.matcher.v3 (placeholder)
    ow::xds::r#type::matcher::v3::Matcher => ew::xds::r#type::matcher::v3::Matcher {}

    // google.rpc
    ow::google::rpc::Status => ew::google::rpc::Status { code, message, details }

    // envoy.type.v3 / envoy.type.matcher.v3
    ot::Percent => et::Percent { value }
    ot::FractionalPercent => et::FractionalPercent { numerator, denominator }
    ot::Int64Range => et::Int64Range { start, end }
    ot::SemanticVersion => et::SemanticVersion { major_number, minor_number, patch }
    om::regex_matcher::GoogleRe2 => em::regex_matcher::GoogleRe2 { max_program_size }
    om::RegexMatcher => em::RegexMatcher { engine_type, regex }
    om::RegexMatchAndSubstitute => em::RegexMatchAndSubstitute { pattern, substitution }
    om::StringMatcher => em::StringMatcher { match_pattern, ignore_case }
    om::ListStringMatcher => em::ListStringMatcher { patterns }
    // Placeholders (metadata.proto, filter_state.proto).
    om::MetadataMatcher => em::MetadataMatcher {}
    om::FilterStateMatcher => em::FilterStateMatcher {}

    // envoy.config.core.v3: base.proto
    oc::Locality => ec::Locality { region, zone, sub_zone }
    oc::BuildVersion => ec::BuildVersion { version, metadata }
    oc::Node => ec::Node {
        id, cluster, metadata, locality, user_agent_name, user_agent_version_type, client_features,
    }
    oc::Metadata => ec::Metadata { filter_metadata, typed_filter_metadata }
    oc::HeaderValue => ec::HeaderValue { key, value, raw_value }
    oc::HeaderValueOption => ec::HeaderValueOption { header, append, append_action, keep_empty_value }
    oc::HeaderMap => ec::HeaderMap { headers }
    oc::DataSource => ec::DataSource { specifier }
    oc::TransportSocket => ec::TransportSocket { name, config_type }
    oc::RuntimeFractionalPercent => ec::RuntimeFractionalPercent { default_value, runtime_key }
    oc::ControlPlane => ec::ControlPlane { identifier }

    // extension.proto
    oc::TypedExtensionConfig => ec::TypedExtensionConfig { name, typed_config }

    // address.proto
    oc::Pipe => ec::Pipe { path, mode }
    oc::SocketAddress => ec::SocketAddress {
        protocol, address, port_specifier, resolver_name, ipv4_compat,
    }
    oc::Address => ec::Address { address }
    oc::CidrRange => ec::CidrRange { address_prefix, prefix_len }
    // Placeholders.
    oc::TcpKeepalive => ec::TcpKeepalive {}
    oc::BindConfig => ec::BindConfig {}

    // Placeholders (socket_option.proto, resolver.proto, substitution_format_string.proto).
    oc::SocketOption => ec::SocketOption {}
    oc::DnsResolutionConfig => ec::DnsResolutionConfig {}
    oc::SubstitutionFormatString => ec::SubstitutionFormatString {}

    // grpc_service.proto, config_source.proto
    oc::grpc_service::EnvoyGrpc => ec::grpc_service::EnvoyGrpc { cluster_name, authority }
    oc::GrpcService => ec::GrpcService { target_specifier, timeout, initial_metadata }
    oc::ApiConfigSource => ec::ApiConfigSource {
        api_type, transport_api_version, cluster_names, grpc_services, refresh_delay,
        request_timeout, set_node_on_first_message_only,
    }
    oc::AggregatedConfigSource => ec::AggregatedConfigSource {}
    oc::SelfConfigSource => ec::SelfConfigSource { transport_api_version }
    oc::ConfigSource => ec::ConfigSource {
        config_source_specifier, initial_fetch_timeout, resource_api_version,
    }

    // protocol.proto
    oc::HttpProtocolOptions => ec::HttpProtocolOptions {
        idle_timeout, max_connection_duration, max_headers_count, max_stream_duration,
        headers_with_underscores_action, max_requests_per_connection,
    }
    oc::Http1ProtocolOptions => ec::Http1ProtocolOptions {
        allow_absolute_url, accept_http_10, default_host_for_http_10, enable_trailers,
    }
    oc::Http2ProtocolOptions => ec::Http2ProtocolOptions {
        hpack_table_size, max_concurrent_streams, initial_stream_window_size,
        initial_connection_window_size, allow_connect,
    }
    // Placeholder.
    oc::SchemeHeaderTransformation => ec::SchemeHeaderTransformation {}

    // health_check.proto
    oc::health_check::Payload => ec::health_check::Payload { payload }
    oc::health_check::HttpHealthCheck => ec::health_check::HttpHealthCheck {
        host, path, send, receive, response_buffer_size, request_headers_to_add,
        request_headers_to_remove, expected_statuses, retriable_statuses, codec_client_type,
        service_name_matcher, method,
    }
    oc::health_check::TcpHealthCheck => ec::health_check::TcpHealthCheck {
        send, receive, proxy_protocol_config,
    }
    oc::health_check::GrpcHealthCheck => ec::health_check::GrpcHealthCheck {
        service_name, authority, initial_metadata,
    }
    oc::health_check::CustomHealthCheck => ec::health_check::CustomHealthCheck { name, config_type }
    oc::health_check::TlsOptions => ec::health_check::TlsOptions { alpn_protocols }
    oc::HealthCheck => ec::HealthCheck {
        timeout, interval, initial_jitter, interval_jitter, interval_jitter_percent,
        unhealthy_threshold, healthy_threshold, alt_port, reuse_connection, health_checker,
        no_traffic_interval, no_traffic_healthy_interval, unhealthy_interval,
        unhealthy_edge_interval, healthy_edge_interval, tls_options,
        transport_socket_match_criteria,
    }
    // proxy_protocol.proto (placeholder)
    oc::ProxyProtocolConfig => ec::ProxyProtocolConfig {}

    // envoy.service.discovery.v3
    od::DiscoveryRequest => ed::DiscoveryRequest {
        version_info, node, resource_names, type_url, response_nonce, error_detail,
    }
    od::DiscoveryResponse => ed::DiscoveryResponse {
        version_info, resources, canary, type_url, nonce, control_plane,
    }
    od::DeltaDiscoveryRequest => ed::DeltaDiscoveryRequest {
        node, type_url, resource_names_subscribe, resource_names_unsubscribe,
        initial_resource_versions, response_nonce, error_detail,
    }
    od::DeltaDiscoveryResponse => ed::DeltaDiscoveryResponse {
        system_version_info, resources, type_url, removed_resources, nonce, control_plane,
    }
    od::resource::CacheControl => ed::resource::CacheControl { do_not_cache }
    od::Resource => ed::Resource { name, aliases, version, resource, ttl, cache_control }

    // envoy.config.endpoint.v3
    oe::endpoint::HealthCheckConfig => ee::endpoint::HealthCheckConfig {
        port_value, hostname, address, disable_active_health_check,
    }
    oe::endpoint::AdditionalAddress => ee::endpoint::AdditionalAddress { address }
    oe::Endpoint => ee::Endpoint { address, health_check_config, hostname, additional_addresses }
    oe::LbEndpoint => ee::LbEndpoint {
        host_identifier, health_status, metadata, load_balancing_weight,
    }
    oe::LocalityLbEndpoints => ee::LocalityLbEndpoints {
        locality, lb_endpoints, load_balancing_weight, priority, proximity, lb_config,
    }
    // Placeholder.
    oe::LedsClusterLocalityConfig => ee::LedsClusterLocalityConfig {}
    oe::cluster_load_assignment::policy::DropOverload
        => ee::cluster_load_assignment::policy::DropOverload { category, drop_percentage }
    oe::cluster_load_assignment::Policy => ee::cluster_load_assignment::Policy {
        drop_overloads, overprovisioning_factor, endpoint_stale_after, weighted_priority_health,
    }
    oe::ClusterLoadAssignment => ee::ClusterLoadAssignment { cluster_name, endpoints, policy }

    // envoy.config.cluster.v3
    ocl::circuit_breakers::thresholds::RetryBudget
        => ecl::circuit_breakers::thresholds::RetryBudget { budget_percent, min_retry_concurrency }
    ocl::circuit_breakers::Thresholds => ecl::circuit_breakers::Thresholds {
        priority, max_connections, max_pending_requests, max_requests, max_retries, retry_budget,
        track_remaining, max_connection_pools,
    }
    ocl::CircuitBreakers => ecl::CircuitBreakers { thresholds, per_host_thresholds }
    ocl::OutlierDetection => ecl::OutlierDetection {
        consecutive_5xx, interval, base_ejection_time, max_ejection_percent,
        enforcing_consecutive_5xx, enforcing_success_rate, success_rate_minimum_hosts,
        success_rate_request_volume, success_rate_stdev_factor, consecutive_gateway_failure,
        enforcing_consecutive_gateway_failure, split_external_local_origin_errors,
        consecutive_local_origin_failure, enforcing_consecutive_local_origin_failure,
        enforcing_local_origin_success_rate, failure_percentage_threshold,
        enforcing_failure_percentage, enforcing_failure_percentage_local_origin,
        failure_percentage_minimum_hosts, failure_percentage_request_volume, max_ejection_time,
        max_ejection_time_jitter, successful_active_health_check_uneject_host, monitors,
        always_eject_one_host, detect_degraded_hosts,
    }
    ocl::cluster::CustomClusterType => ecl::cluster::CustomClusterType { name, typed_config }
    ocl::cluster::EdsClusterConfig => ecl::cluster::EdsClusterConfig { eds_config, service_name }
    // Placeholders.
    ocl::cluster::SlowStartConfig => ecl::cluster::SlowStartConfig {}
    ocl::cluster::QueuingPolicies => ecl::cluster::QueuingPolicies {}
    ocl::UpstreamConnectionOptions => ecl::UpstreamConnectionOptions {}
    ocl::cluster::RoundRobinLbConfig => ecl::cluster::RoundRobinLbConfig { slow_start_config }
    ocl::cluster::LeastRequestLbConfig => ecl::cluster::LeastRequestLbConfig {
        choice_count, slow_start_config,
    }
    ocl::cluster::RingHashLbConfig => ecl::cluster::RingHashLbConfig {
        minimum_ring_size, hash_function, maximum_ring_size,
    }
    ocl::cluster::CommonLbConfig => ecl::cluster::CommonLbConfig { healthy_panic_threshold }
    ocl::Cluster => ecl::Cluster {
        name, alt_stat_name, cluster_discovery_type, eds_cluster_config, connect_timeout,
        per_connection_buffer_limit_bytes, lb_policy, load_assignment, health_checks,
        circuit_breakers, typed_extension_protocol_options, dns_refresh_rate, dns_lookup_family,
        outlier_detection, cleanup_interval, lb_config, common_lb_config, transport_socket,
        metadata, protocol_selection, close_connections_on_host_health_failure,
        ignore_health_on_host_removal, dns_resolvers, dns_resolution_config,
        typed_dns_resolver_config, transport_socket_matcher, upstream_bind_config,
        upstream_connection_options, common_http_protocol_options,
        connection_pool_per_downstream_connection, queuing_policies,
        per_connection_buffer_high_watermark_timeout,
    }

    // envoy.extensions.upstreams.http.v3
    ou::http_protocol_options::ExplicitHttpConfig
        => eu::http_protocol_options::ExplicitHttpConfig { protocol_config }
    ou::http_protocol_options::UseDownstreamHttpConfig
        => eu::http_protocol_options::UseDownstreamHttpConfig {
            http_protocol_options, http2_protocol_options,
        }
    ou::http_protocol_options::AutoHttpConfig => eu::http_protocol_options::AutoHttpConfig {
        http_protocol_options, http2_protocol_options,
    }
    ou::HttpProtocolOptions => eu::HttpProtocolOptions {
        common_http_protocol_options, upstream_protocol_options,
    }

    // envoy.extensions.transport_sockets.tls.v3
    otls::TlsParameters => etls::TlsParameters {
        tls_minimum_protocol_version, tls_maximum_protocol_version, cipher_suites, ecdh_curves,
    }
    otls::TlsCertificate => etls::TlsCertificate { certificate_chain, private_key }
    otls::SubjectAltNameMatcher => etls::SubjectAltNameMatcher { san_type, matcher, oid }
    otls::CertificateValidationContext => etls::CertificateValidationContext {
        trusted_ca, verify_certificate_spki, verify_certificate_hash,
        match_typed_subject_alt_names, crl, allow_expired_certificate, trust_chain_verification,
    }
    otls::SdsSecretConfig => etls::SdsSecretConfig { name, sds_config }
    otls::Secret => etls::Secret { name, r#type }
    otls::common_tls_context::CombinedCertificateValidationContext
        => etls::common_tls_context::CombinedCertificateValidationContext {
            default_validation_context, validation_context_sds_secret_config,
        }
    otls::CommonTlsContext => etls::CommonTlsContext {
        tls_params, tls_certificates, tls_certificate_sds_secret_configs,
        validation_context_type, alpn_protocols,
    }
    otls::UpstreamTlsContext => etls::UpstreamTlsContext {
        common_tls_context, sni, allow_renegotiation, max_session_keys,
    }
    otls::DownstreamTlsContext => etls::DownstreamTlsContext {
        common_tls_context, require_client_certificate, require_sni,
    }
}

same_oneof! {
    om::regex_matcher::EngineType => em::regex_matcher::EngineType { GoogleRe2 }
    om::string_matcher::MatchPattern => em::string_matcher::MatchPattern {
        Exact, Prefix, Suffix, SafeRegex, Contains,
    }
    oc::node::UserAgentVersionType => ec::node::UserAgentVersionType {
        UserAgentVersion, UserAgentBuildVersion,
    }
    oc::data_source::Specifier => ec::data_source::Specifier {
        Filename, InlineBytes, InlineString, EnvironmentVariable,
    }
    oc::transport_socket::ConfigType => ec::transport_socket::ConfigType { TypedConfig }
    oc::socket_address::PortSpecifier => ec::socket_address::PortSpecifier { PortValue, NamedPort }
    oc::address::Address => ec::address::Address { SocketAddress, Pipe }
    oc::grpc_service::TargetSpecifier => ec::grpc_service::TargetSpecifier { EnvoyGrpc }
    oc::config_source::ConfigSourceSpecifier => ec::config_source::ConfigSourceSpecifier {
        Path, ApiConfigSource, Ads, Self_,
    }
    oc::health_check::payload::Payload => ec::health_check::payload::Payload { Text, Binary }
    oc::health_check::HealthChecker => ec::health_check::HealthChecker {
        HttpHealthCheck, TcpHealthCheck, GrpcHealthCheck, CustomHealthCheck,
    }
    oc::health_check::custom_health_check::ConfigType
        => ec::health_check::custom_health_check::ConfigType { TypedConfig }
    oe::lb_endpoint::HostIdentifier => ee::lb_endpoint::HostIdentifier { Endpoint, EndpointName }
    oe::locality_lb_endpoints::LbConfig => ee::locality_lb_endpoints::LbConfig {
        LedsClusterLocalityConfig,
    }
    ocl::cluster::ClusterDiscoveryType => ecl::cluster::ClusterDiscoveryType { Type, ClusterType }
    ocl::cluster::LbConfig => ecl::cluster::LbConfig {
        RingHashLbConfig, LeastRequestLbConfig, RoundRobinLbConfig,
    }
    ou::http_protocol_options::explicit_http_config::ProtocolConfig
        => eu::http_protocol_options::explicit_http_config::ProtocolConfig {
            HttpProtocolOptions, Http2ProtocolOptions,
        }
    ou::http_protocol_options::UpstreamProtocolOptions
        => eu::http_protocol_options::UpstreamProtocolOptions {
            ExplicitHttpConfig, UseDownstreamProtocolConfig, AutoConfig,
        }
    otls::secret::Type => etls::secret::Type { TlsCertificate, ValidationContext }
    otls::common_tls_context::ValidationContextType
        => etls::common_tls_context::ValidationContextType {
            ValidationContext, ValidationContextSdsSecretConfig, CombinedValidationContext,
        }
}

/// Ours -> bytes -> envoy-types (checked field by field) -> bytes -> ours.
/// Also checks that both sides agree on the message's full protobuf name.
fn roundtrip<O, T>(ours: &O)
where
    O: Message + Name + Default + PartialEq + Debug + Same<T>,
    T: Message + Name + Default,
{
    assert_eq!(O::full_name(), T::full_name(), "message name");
    assert_eq!(O::type_url(), T::type_url(), "type URL");
    let bytes = ours.encode_to_vec();
    let theirs = T::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("{}: decode as envoy-types: {e}", O::full_name()));
    ours.same(&theirs, &O::full_name());
    let back = O::decode(theirs.encode_to_vec().as_slice())
        .unwrap_or_else(|e| panic!("{}: decode back as ours: {e}", O::full_name()));
    assert_eq!(
        &back,
        ours,
        "{}: round trip through envoy-types",
        O::full_name()
    );
}

// ---------------------------------------------------------------------------
// Builders: every field set, every value distinct.
// ---------------------------------------------------------------------------

/// Source of distinct values: every call returns a value never seen before.
#[derive(Default)]
struct G(u32);

impl G {
    fn n(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
    fn i(&mut self) -> i32 {
        i32::try_from(self.n()).unwrap()
    }
    fn u64(&mut self) -> u64 {
        u64::from(self.n()) + (1 << 40)
    }
    fn i64(&mut self) -> i64 {
        -i64::from(self.n()) - (1 << 40)
    }
    fn f64(&mut self) -> f64 {
        f64::from(self.n()) + 0.25
    }
    fn s(&mut self) -> String {
        format!("s-{}", self.n())
    }
    fn ss(&mut self) -> Vec<String> {
        vec![self.s(), self.s()]
    }
    fn bytes(&mut self) -> Vec<u8> {
        format!("b-{}", self.n()).into_bytes()
    }
    fn dur(&mut self) -> prost_types::Duration {
        prost_types::Duration {
            seconds: i64::from(self.n()),
            nanos: self.i(),
        }
    }
    fn any(&mut self) -> prost_types::Any {
        prost_types::Any {
            type_url: format!("type.googleapis.com/test.M{}", self.n()),
            value: self.bytes(),
        }
    }
    fn strukt(&mut self) -> prost_types::Struct {
        use prost_types::value::Kind;
        let mut fields = std::collections::BTreeMap::new();
        fields.insert(
            self.s(),
            prost_types::Value {
                kind: Some(Kind::StringValue(self.s())),
            },
        );
        fields.insert(
            self.s(),
            prost_types::Value {
                kind: Some(Kind::NumberValue(self.f64())),
            },
        );
        prost_types::Struct { fields }
    }
}

// envoy.type

fn percent(g: &mut G) -> ot::Percent {
    ot::Percent { value: g.f64() }
}
fn fractional_percent(g: &mut G) -> ot::FractionalPercent {
    ot::FractionalPercent {
        numerator: g.n(),
        denominator: ot::fractional_percent::DenominatorType::Million as i32,
    }
}
fn int64_range(g: &mut G) -> ot::Int64Range {
    ot::Int64Range {
        start: g.i64(),
        end: g.i64(),
    }
}
fn semantic_version(g: &mut G) -> ot::SemanticVersion {
    ot::SemanticVersion {
        major_number: g.n(),
        minor_number: g.n(),
        patch: g.n(),
    }
}
fn google_re2(g: &mut G) -> om::regex_matcher::GoogleRe2 {
    om::regex_matcher::GoogleRe2 {
        max_program_size: Some(g.n()),
    }
}
fn regex_matcher(g: &mut G) -> om::RegexMatcher {
    om::RegexMatcher {
        engine_type: Some(om::regex_matcher::EngineType::GoogleRe2(google_re2(g))),
        regex: g.s(),
    }
}
fn regex_match_and_substitute(g: &mut G) -> om::RegexMatchAndSubstitute {
    om::RegexMatchAndSubstitute {
        pattern: Some(regex_matcher(g)),
        substitution: g.s(),
    }
}
fn string_matcher(g: &mut G, v: usize) -> om::StringMatcher {
    use om::string_matcher::MatchPattern as P;
    om::StringMatcher {
        match_pattern: Some(match v % 5 {
            0 => P::Exact(g.s()),
            1 => P::Prefix(g.s()),
            2 => P::Suffix(g.s()),
            3 => P::SafeRegex(regex_matcher(g)),
            _ => P::Contains(g.s()),
        }),
        ignore_case: true,
    }
}
fn list_string_matcher(g: &mut G, v: usize) -> om::ListStringMatcher {
    om::ListStringMatcher {
        patterns: vec![string_matcher(g, v), string_matcher(g, v + 1)],
    }
}

// envoy.config.core.v3

fn locality(g: &mut G) -> oc::Locality {
    oc::Locality {
        region: g.s(),
        zone: g.s(),
        sub_zone: g.s(),
    }
}
fn build_version(g: &mut G) -> oc::BuildVersion {
    oc::BuildVersion {
        version: Some(semantic_version(g)),
        metadata: Some(g.strukt()),
    }
}
fn node(g: &mut G, v: usize) -> oc::Node {
    use oc::node::UserAgentVersionType as U;
    oc::Node {
        id: g.s(),
        cluster: g.s(),
        metadata: Some(g.strukt()),
        locality: Some(locality(g)),
        user_agent_name: g.s(),
        user_agent_version_type: Some(match v % 2 {
            0 => U::UserAgentVersion(g.s()),
            _ => U::UserAgentBuildVersion(build_version(g)),
        }),
        client_features: g.ss(),
    }
}
fn metadata(g: &mut G) -> oc::Metadata {
    oc::Metadata {
        filter_metadata: HashMap::from([(g.s(), g.strukt()), (g.s(), g.strukt())]),
        typed_filter_metadata: HashMap::from([(g.s(), g.any()), (g.s(), g.any())]),
    }
}
fn header_value(g: &mut G) -> oc::HeaderValue {
    oc::HeaderValue {
        key: g.s(),
        value: g.s(),
        raw_value: g.bytes(),
    }
}
fn header_value_option(g: &mut G) -> oc::HeaderValueOption {
    oc::HeaderValueOption {
        header: Some(header_value(g)),
        append: Some(true),
        append_action: oc::header_value_option::HeaderAppendAction::OverwriteIfExists as i32,
        keep_empty_value: true,
    }
}
fn header_map(g: &mut G) -> oc::HeaderMap {
    oc::HeaderMap {
        headers: vec![header_value(g), header_value(g)],
    }
}
fn data_source(g: &mut G, v: usize) -> oc::DataSource {
    use oc::data_source::Specifier as S;
    oc::DataSource {
        specifier: Some(match v % 4 {
            0 => S::Filename(g.s()),
            1 => S::InlineBytes(g.bytes()),
            2 => S::InlineString(g.s()),
            _ => S::EnvironmentVariable(g.s()),
        }),
    }
}
fn transport_socket(g: &mut G) -> oc::TransportSocket {
    oc::TransportSocket {
        name: g.s(),
        config_type: Some(oc::transport_socket::ConfigType::TypedConfig(g.any())),
    }
}
fn runtime_fractional_percent(g: &mut G) -> oc::RuntimeFractionalPercent {
    oc::RuntimeFractionalPercent {
        default_value: Some(fractional_percent(g)),
        runtime_key: g.s(),
    }
}
fn control_plane(g: &mut G) -> oc::ControlPlane {
    oc::ControlPlane { identifier: g.s() }
}
fn typed_extension_config(g: &mut G) -> oc::TypedExtensionConfig {
    oc::TypedExtensionConfig {
        name: g.s(),
        typed_config: Some(g.any()),
    }
}
fn pipe(g: &mut G) -> oc::Pipe {
    oc::Pipe {
        path: g.s(),
        mode: g.n(),
    }
}
fn socket_address(g: &mut G, v: usize) -> oc::SocketAddress {
    use oc::socket_address::PortSpecifier as P;
    oc::SocketAddress {
        protocol: oc::socket_address::Protocol::Udp as i32,
        address: g.s(),
        port_specifier: Some(match v % 2 {
            0 => P::PortValue(g.n()),
            _ => P::NamedPort(g.s()),
        }),
        resolver_name: g.s(),
        ipv4_compat: true,
    }
}
fn address(g: &mut G, v: usize) -> oc::Address {
    use oc::address::Address as A;
    oc::Address {
        address: Some(match v % 2 {
            0 => A::SocketAddress(socket_address(g, v / 2)),
            _ => A::Pipe(pipe(g)),
        }),
    }
}
fn cidr_range(g: &mut G) -> oc::CidrRange {
    oc::CidrRange {
        address_prefix: g.s(),
        prefix_len: Some(g.n()),
    }
}
fn envoy_grpc(g: &mut G) -> oc::grpc_service::EnvoyGrpc {
    oc::grpc_service::EnvoyGrpc {
        cluster_name: g.s(),
        authority: g.s(),
    }
}
fn grpc_service(g: &mut G) -> oc::GrpcService {
    oc::GrpcService {
        target_specifier: Some(oc::grpc_service::TargetSpecifier::EnvoyGrpc(envoy_grpc(g))),
        timeout: Some(g.dur()),
        initial_metadata: vec![header_value(g), header_value(g)],
    }
}
fn api_config_source(g: &mut G) -> oc::ApiConfigSource {
    oc::ApiConfigSource {
        api_type: oc::api_config_source::ApiType::AggregatedDeltaGrpc as i32,
        transport_api_version: oc::ApiVersion::V3 as i32,
        cluster_names: g.ss(),
        grpc_services: vec![grpc_service(g), grpc_service(g)],
        refresh_delay: Some(g.dur()),
        request_timeout: Some(g.dur()),
        set_node_on_first_message_only: true,
    }
}
fn self_config_source() -> oc::SelfConfigSource {
    oc::SelfConfigSource {
        transport_api_version: oc::ApiVersion::V3 as i32,
    }
}
fn config_source(g: &mut G, v: usize) -> oc::ConfigSource {
    use oc::config_source::ConfigSourceSpecifier as S;
    oc::ConfigSource {
        config_source_specifier: Some(match v % 4 {
            0 => S::Path(g.s()),
            1 => S::ApiConfigSource(api_config_source(g)),
            2 => S::Ads(oc::AggregatedConfigSource {}),
            _ => S::Self_(self_config_source()),
        }),
        initial_fetch_timeout: Some(g.dur()),
        resource_api_version: oc::ApiVersion::V2 as i32,
    }
}
fn http_protocol_options(g: &mut G) -> oc::HttpProtocolOptions {
    oc::HttpProtocolOptions {
        idle_timeout: Some(g.dur()),
        max_connection_duration: Some(g.dur()),
        max_headers_count: Some(g.n()),
        max_stream_duration: Some(g.dur()),
        headers_with_underscores_action:
            oc::http_protocol_options::HeadersWithUnderscoresAction::DropHeader as i32,
        max_requests_per_connection: Some(g.n()),
    }
}
fn http1_protocol_options(g: &mut G) -> oc::Http1ProtocolOptions {
    oc::Http1ProtocolOptions {
        allow_absolute_url: Some(true),
        accept_http_10: true,
        default_host_for_http_10: g.s(),
        enable_trailers: true,
    }
}
fn http2_protocol_options(g: &mut G) -> oc::Http2ProtocolOptions {
    oc::Http2ProtocolOptions {
        hpack_table_size: Some(g.n()),
        max_concurrent_streams: Some(g.n()),
        initial_stream_window_size: Some(g.n()),
        initial_connection_window_size: Some(g.n()),
        allow_connect: true,
    }
}
fn payload(g: &mut G, v: usize) -> oc::health_check::Payload {
    use oc::health_check::payload::Payload as P;
    oc::health_check::Payload {
        payload: Some(match v % 2 {
            0 => P::Text(g.s()),
            _ => P::Binary(g.bytes()),
        }),
    }
}
fn http_health_check(g: &mut G, v: usize) -> oc::health_check::HttpHealthCheck {
    oc::health_check::HttpHealthCheck {
        host: g.s(),
        path: g.s(),
        send: Some(payload(g, v)),
        receive: vec![payload(g, v), payload(g, v + 1)],
        response_buffer_size: Some(g.u64()),
        request_headers_to_add: vec![header_value_option(g), header_value_option(g)],
        request_headers_to_remove: g.ss(),
        expected_statuses: vec![int64_range(g), int64_range(g)],
        retriable_statuses: vec![int64_range(g), int64_range(g)],
        codec_client_type: ot::CodecClientType::Http3 as i32,
        service_name_matcher: Some(string_matcher(g, v)),
        method: oc::RequestMethod::Post as i32,
    }
}
fn tcp_health_check(g: &mut G, v: usize) -> oc::health_check::TcpHealthCheck {
    oc::health_check::TcpHealthCheck {
        send: Some(payload(g, v)),
        receive: vec![payload(g, v), payload(g, v + 1)],
        proxy_protocol_config: Some(oc::ProxyProtocolConfig {}),
    }
}
fn grpc_health_check(g: &mut G) -> oc::health_check::GrpcHealthCheck {
    oc::health_check::GrpcHealthCheck {
        service_name: g.s(),
        authority: g.s(),
        initial_metadata: vec![header_value_option(g), header_value_option(g)],
    }
}
fn custom_health_check(g: &mut G) -> oc::health_check::CustomHealthCheck {
    use oc::health_check::custom_health_check::ConfigType;
    oc::health_check::CustomHealthCheck {
        name: g.s(),
        config_type: Some(ConfigType::TypedConfig(g.any())),
    }
}
fn tls_options(g: &mut G) -> oc::health_check::TlsOptions {
    oc::health_check::TlsOptions {
        alpn_protocols: g.ss(),
    }
}
fn health_check(g: &mut G, v: usize) -> oc::HealthCheck {
    use oc::health_check::HealthChecker as H;
    oc::HealthCheck {
        timeout: Some(g.dur()),
        interval: Some(g.dur()),
        initial_jitter: Some(g.dur()),
        interval_jitter: Some(g.dur()),
        interval_jitter_percent: g.n(),
        unhealthy_threshold: Some(g.n()),
        healthy_threshold: Some(g.n()),
        alt_port: Some(g.n()),
        reuse_connection: Some(true),
        health_checker: Some(match v % 4 {
            0 => H::HttpHealthCheck(http_health_check(g, v / 4)),
            1 => H::TcpHealthCheck(tcp_health_check(g, v)),
            2 => H::GrpcHealthCheck(grpc_health_check(g)),
            _ => H::CustomHealthCheck(custom_health_check(g)),
        }),
        no_traffic_interval: Some(g.dur()),
        no_traffic_healthy_interval: Some(g.dur()),
        unhealthy_interval: Some(g.dur()),
        unhealthy_edge_interval: Some(g.dur()),
        healthy_edge_interval: Some(g.dur()),
        tls_options: Some(tls_options(g)),
        transport_socket_match_criteria: Some(g.strukt()),
    }
}

// envoy.service.discovery.v3

fn status(g: &mut G) -> ow::google::rpc::Status {
    ow::google::rpc::Status {
        code: g.i(),
        message: g.s(),
        details: vec![g.any(), g.any()],
    }
}
fn discovery_request(g: &mut G, v: usize) -> od::DiscoveryRequest {
    od::DiscoveryRequest {
        version_info: g.s(),
        node: Some(node(g, v)),
        resource_names: g.ss(),
        type_url: g.s(),
        response_nonce: g.s(),
        error_detail: Some(status(g)),
    }
}
fn discovery_response(g: &mut G) -> od::DiscoveryResponse {
    od::DiscoveryResponse {
        version_info: g.s(),
        resources: vec![g.any(), g.any()],
        canary: true,
        type_url: g.s(),
        nonce: g.s(),
        control_plane: Some(control_plane(g)),
    }
}
fn delta_discovery_request(g: &mut G, v: usize) -> od::DeltaDiscoveryRequest {
    od::DeltaDiscoveryRequest {
        node: Some(node(g, v)),
        type_url: g.s(),
        resource_names_subscribe: g.ss(),
        resource_names_unsubscribe: g.ss(),
        initial_resource_versions: HashMap::from([(g.s(), g.s()), (g.s(), g.s())]),
        response_nonce: g.s(),
        error_detail: Some(status(g)),
    }
}
fn cache_control() -> od::resource::CacheControl {
    od::resource::CacheControl { do_not_cache: true }
}
fn resource(g: &mut G) -> od::Resource {
    od::Resource {
        name: g.s(),
        aliases: g.ss(),
        version: g.s(),
        resource: Some(g.any()),
        ttl: Some(g.dur()),
        cache_control: Some(cache_control()),
    }
}
fn delta_discovery_response(g: &mut G) -> od::DeltaDiscoveryResponse {
    od::DeltaDiscoveryResponse {
        system_version_info: g.s(),
        resources: vec![resource(g), resource(g)],
        type_url: g.s(),
        removed_resources: g.ss(),
        nonce: g.s(),
        control_plane: Some(control_plane(g)),
    }
}

// envoy.config.endpoint.v3

fn health_check_config(g: &mut G, v: usize) -> oe::endpoint::HealthCheckConfig {
    oe::endpoint::HealthCheckConfig {
        port_value: g.n(),
        hostname: g.s(),
        address: Some(address(g, v)),
        disable_active_health_check: true,
    }
}
fn endpoint(g: &mut G, v: usize) -> oe::Endpoint {
    oe::Endpoint {
        address: Some(address(g, v)),
        health_check_config: Some(health_check_config(g, v + 1)),
        hostname: g.s(),
        additional_addresses: vec![
            oe::endpoint::AdditionalAddress {
                address: Some(address(g, v + 1)),
            },
            oe::endpoint::AdditionalAddress {
                address: Some(address(g, v)),
            },
        ],
    }
}
fn lb_endpoint(g: &mut G, v: usize) -> oe::LbEndpoint {
    use oe::lb_endpoint::HostIdentifier as H;
    oe::LbEndpoint {
        host_identifier: Some(match v % 2 {
            0 => H::Endpoint(endpoint(g, v / 2)),
            _ => H::EndpointName(g.s()),
        }),
        health_status: oc::HealthStatus::Degraded as i32,
        metadata: Some(metadata(g)),
        load_balancing_weight: Some(g.n()),
    }
}
fn locality_lb_endpoints(g: &mut G, v: usize) -> oe::LocalityLbEndpoints {
    oe::LocalityLbEndpoints {
        locality: Some(locality(g)),
        lb_endpoints: vec![lb_endpoint(g, v), lb_endpoint(g, v + 1)],
        load_balancing_weight: Some(g.n()),
        priority: g.n(),
        proximity: Some(g.n()),
        lb_config: Some(
            oe::locality_lb_endpoints::LbConfig::LedsClusterLocalityConfig(
                oe::LedsClusterLocalityConfig {},
            ),
        ),
    }
}
fn drop_overload(g: &mut G) -> oe::cluster_load_assignment::policy::DropOverload {
    oe::cluster_load_assignment::policy::DropOverload {
        category: g.s(),
        drop_percentage: Some(fractional_percent(g)),
    }
}
fn policy(g: &mut G) -> oe::cluster_load_assignment::Policy {
    oe::cluster_load_assignment::Policy {
        drop_overloads: vec![drop_overload(g), drop_overload(g)],
        overprovisioning_factor: Some(g.n()),
        endpoint_stale_after: Some(g.dur()),
        weighted_priority_health: true,
    }
}
fn cluster_load_assignment(g: &mut G, v: usize) -> oe::ClusterLoadAssignment {
    oe::ClusterLoadAssignment {
        cluster_name: g.s(),
        endpoints: vec![locality_lb_endpoints(g, v), locality_lb_endpoints(g, v + 1)],
        policy: Some(policy(g)),
    }
}

// envoy.config.cluster.v3

fn retry_budget(g: &mut G) -> ocl::circuit_breakers::thresholds::RetryBudget {
    ocl::circuit_breakers::thresholds::RetryBudget {
        budget_percent: Some(percent(g)),
        min_retry_concurrency: Some(g.n()),
    }
}
fn thresholds(g: &mut G) -> ocl::circuit_breakers::Thresholds {
    ocl::circuit_breakers::Thresholds {
        priority: oc::RoutingPriority::High as i32,
        max_connections: Some(g.n()),
        max_pending_requests: Some(g.n()),
        max_requests: Some(g.n()),
        max_retries: Some(g.n()),
        retry_budget: Some(retry_budget(g)),
        track_remaining: true,
        max_connection_pools: Some(g.n()),
    }
}
fn circuit_breakers(g: &mut G) -> ocl::CircuitBreakers {
    ocl::CircuitBreakers {
        thresholds: vec![thresholds(g), thresholds(g)],
        per_host_thresholds: vec![thresholds(g)],
    }
}
fn outlier_detection(g: &mut G) -> ocl::OutlierDetection {
    ocl::OutlierDetection {
        consecutive_5xx: Some(g.n()),
        interval: Some(g.dur()),
        base_ejection_time: Some(g.dur()),
        max_ejection_percent: Some(g.n()),
        enforcing_consecutive_5xx: Some(g.n()),
        enforcing_success_rate: Some(g.n()),
        success_rate_minimum_hosts: Some(g.n()),
        success_rate_request_volume: Some(g.n()),
        success_rate_stdev_factor: Some(g.n()),
        consecutive_gateway_failure: Some(g.n()),
        enforcing_consecutive_gateway_failure: Some(g.n()),
        split_external_local_origin_errors: true,
        consecutive_local_origin_failure: Some(g.n()),
        enforcing_consecutive_local_origin_failure: Some(g.n()),
        enforcing_local_origin_success_rate: Some(g.n()),
        failure_percentage_threshold: Some(g.n()),
        enforcing_failure_percentage: Some(g.n()),
        enforcing_failure_percentage_local_origin: Some(g.n()),
        failure_percentage_minimum_hosts: Some(g.n()),
        failure_percentage_request_volume: Some(g.n()),
        max_ejection_time: Some(g.dur()),
        max_ejection_time_jitter: Some(g.dur()),
        successful_active_health_check_uneject_host: Some(true),
        monitors: vec![typed_extension_config(g)],
        always_eject_one_host: Some(true),
        detect_degraded_hosts: Some(true),
    }
}
fn custom_cluster_type(g: &mut G) -> ocl::cluster::CustomClusterType {
    ocl::cluster::CustomClusterType {
        name: g.s(),
        typed_config: Some(g.any()),
    }
}
fn eds_cluster_config(g: &mut G, v: usize) -> ocl::cluster::EdsClusterConfig {
    ocl::cluster::EdsClusterConfig {
        eds_config: Some(config_source(g, v)),
        service_name: g.s(),
    }
}
fn least_request_lb_config(g: &mut G) -> ocl::cluster::LeastRequestLbConfig {
    ocl::cluster::LeastRequestLbConfig {
        choice_count: Some(g.n()),
        slow_start_config: Some(ocl::cluster::SlowStartConfig {}),
    }
}
fn round_robin_lb_config() -> ocl::cluster::RoundRobinLbConfig {
    ocl::cluster::RoundRobinLbConfig {
        slow_start_config: Some(ocl::cluster::SlowStartConfig {}),
    }
}
fn ring_hash_lb_config(g: &mut G) -> ocl::cluster::RingHashLbConfig {
    ocl::cluster::RingHashLbConfig {
        minimum_ring_size: Some(g.u64()),
        hash_function: ocl::cluster::ring_hash_lb_config::HashFunction::MurmurHash2 as i32,
        maximum_ring_size: Some(g.u64()),
    }
}
fn common_lb_config(g: &mut G) -> ocl::cluster::CommonLbConfig {
    ocl::cluster::CommonLbConfig {
        healthy_panic_threshold: Some(percent(g)),
    }
}
fn cluster(g: &mut G, v: usize) -> ocl::Cluster {
    use ocl::cluster::{ClusterDiscoveryType as D, LbConfig as L};
    ocl::Cluster {
        name: g.s(),
        alt_stat_name: g.s(),
        cluster_discovery_type: Some(match v % 2 {
            0 => D::Type(ocl::cluster::DiscoveryType::OriginalDst as i32),
            _ => D::ClusterType(custom_cluster_type(g)),
        }),
        eds_cluster_config: Some(eds_cluster_config(g, v)),
        connect_timeout: Some(g.dur()),
        per_connection_buffer_limit_bytes: Some(g.n()),
        lb_policy: ocl::cluster::LbPolicy::LoadBalancingPolicyConfig as i32,
        load_assignment: Some(cluster_load_assignment(g, v)),
        health_checks: vec![health_check(g, v), health_check(g, v + 1)],
        circuit_breakers: Some(circuit_breakers(g)),
        typed_extension_protocol_options: HashMap::from([(g.s(), g.any()), (g.s(), g.any())]),
        dns_refresh_rate: Some(g.dur()),
        dns_lookup_family: ocl::cluster::DnsLookupFamily::V4Preferred as i32,
        outlier_detection: Some(outlier_detection(g)),
        cleanup_interval: Some(g.dur()),
        lb_config: Some(match (v / 2) % 3 {
            0 => L::RingHashLbConfig(ring_hash_lb_config(g)),
            1 => L::LeastRequestLbConfig(least_request_lb_config(g)),
            _ => L::RoundRobinLbConfig(round_robin_lb_config()),
        }),
        common_lb_config: Some(common_lb_config(g)),
        transport_socket: Some(transport_socket(g)),
        metadata: Some(metadata(g)),
        protocol_selection: ocl::cluster::ClusterProtocolSelection::UseDownstreamProtocol as i32,
        close_connections_on_host_health_failure: true,
        ignore_health_on_host_removal: true,
        dns_resolvers: vec![address(g, v), address(g, v + 1)],
        dns_resolution_config: Some(oc::DnsResolutionConfig {}),
        typed_dns_resolver_config: Some(typed_extension_config(g)),
        transport_socket_matcher: Some(ow::xds::r#type::matcher::v3::Matcher {}),
        upstream_bind_config: Some(oc::BindConfig {}),
        upstream_connection_options: Some(ocl::UpstreamConnectionOptions {}),
        common_http_protocol_options: Some(http_protocol_options(g)),
        connection_pool_per_downstream_connection: true,
        queuing_policies: Some(ocl::cluster::QueuingPolicies {}),
        per_connection_buffer_high_watermark_timeout: Some(g.dur()),
    }
}

// envoy.extensions.upstreams.http.v3

fn explicit_http_config(g: &mut G, v: usize) -> ou::http_protocol_options::ExplicitHttpConfig {
    use ou::http_protocol_options::explicit_http_config::ProtocolConfig as P;
    ou::http_protocol_options::ExplicitHttpConfig {
        protocol_config: Some(match v % 2 {
            0 => P::HttpProtocolOptions(http1_protocol_options(g)),
            _ => P::Http2ProtocolOptions(http2_protocol_options(g)),
        }),
    }
}
fn use_downstream_http_config(g: &mut G) -> ou::http_protocol_options::UseDownstreamHttpConfig {
    ou::http_protocol_options::UseDownstreamHttpConfig {
        http_protocol_options: Some(http1_protocol_options(g)),
        http2_protocol_options: Some(http2_protocol_options(g)),
    }
}
fn auto_http_config(g: &mut G) -> ou::http_protocol_options::AutoHttpConfig {
    ou::http_protocol_options::AutoHttpConfig {
        http_protocol_options: Some(http1_protocol_options(g)),
        http2_protocol_options: Some(http2_protocol_options(g)),
    }
}
fn upstream_http_protocol_options(g: &mut G, v: usize) -> ou::HttpProtocolOptions {
    use ou::http_protocol_options::UpstreamProtocolOptions as U;
    ou::HttpProtocolOptions {
        common_http_protocol_options: Some(http_protocol_options(g)),
        upstream_protocol_options: Some(match v % 3 {
            0 => U::ExplicitHttpConfig(explicit_http_config(g, v / 3)),
            1 => U::UseDownstreamProtocolConfig(use_downstream_http_config(g)),
            _ => U::AutoConfig(auto_http_config(g)),
        }),
    }
}

// envoy.extensions.transport_sockets.tls.v3

fn tls_parameters(g: &mut G) -> otls::TlsParameters {
    use otls::tls_parameters::TlsProtocol;
    otls::TlsParameters {
        tls_minimum_protocol_version: TlsProtocol::TlSv11 as i32,
        tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
        cipher_suites: g.ss(),
        ecdh_curves: g.ss(),
    }
}
fn tls_certificate(g: &mut G, v: usize) -> otls::TlsCertificate {
    otls::TlsCertificate {
        certificate_chain: Some(data_source(g, v)),
        private_key: Some(data_source(g, v + 1)),
    }
}
fn subject_alt_name_matcher(g: &mut G, v: usize) -> otls::SubjectAltNameMatcher {
    otls::SubjectAltNameMatcher {
        san_type: otls::subject_alt_name_matcher::SanType::OtherName as i32,
        matcher: Some(string_matcher(g, v)),
        oid: g.s(),
    }
}
fn certificate_validation_context(g: &mut G, v: usize) -> otls::CertificateValidationContext {
    otls::CertificateValidationContext {
        trusted_ca: Some(data_source(g, v)),
        verify_certificate_spki: g.ss(),
        verify_certificate_hash: g.ss(),
        match_typed_subject_alt_names: vec![
            subject_alt_name_matcher(g, v),
            subject_alt_name_matcher(g, v + 1),
        ],
        crl: Some(data_source(g, v + 1)),
        allow_expired_certificate: true,
        trust_chain_verification:
            otls::certificate_validation_context::TrustChainVerification::AcceptUntrusted as i32,
    }
}
fn sds_secret_config(g: &mut G, v: usize) -> otls::SdsSecretConfig {
    otls::SdsSecretConfig {
        name: g.s(),
        sds_config: Some(config_source(g, v)),
    }
}
fn secret(g: &mut G, v: usize) -> otls::Secret {
    use otls::secret::Type as T;
    otls::Secret {
        name: g.s(),
        r#type: Some(match v % 2 {
            0 => T::TlsCertificate(tls_certificate(g, v / 2)),
            _ => T::ValidationContext(certificate_validation_context(g, v / 2)),
        }),
    }
}
fn combined_validation_context(
    g: &mut G,
    v: usize,
) -> otls::common_tls_context::CombinedCertificateValidationContext {
    otls::common_tls_context::CombinedCertificateValidationContext {
        default_validation_context: Some(certificate_validation_context(g, v)),
        validation_context_sds_secret_config: Some(sds_secret_config(g, v)),
    }
}
fn common_tls_context(g: &mut G, v: usize) -> otls::CommonTlsContext {
    use otls::common_tls_context::ValidationContextType as V;
    otls::CommonTlsContext {
        tls_params: Some(tls_parameters(g)),
        tls_certificates: vec![tls_certificate(g, v), tls_certificate(g, v + 2)],
        tls_certificate_sds_secret_configs: vec![sds_secret_config(g, v)],
        validation_context_type: Some(match v % 3 {
            0 => V::ValidationContext(certificate_validation_context(g, v)),
            1 => V::ValidationContextSdsSecretConfig(sds_secret_config(g, v + 1)),
            _ => V::CombinedValidationContext(combined_validation_context(g, v)),
        }),
        alpn_protocols: g.ss(),
    }
}
fn upstream_tls_context(g: &mut G, v: usize) -> otls::UpstreamTlsContext {
    otls::UpstreamTlsContext {
        common_tls_context: Some(common_tls_context(g, v)),
        sni: g.s(),
        allow_renegotiation: true,
        max_session_keys: Some(g.n()),
    }
}
fn downstream_tls_context(g: &mut G, v: usize) -> otls::DownstreamTlsContext {
    otls::DownstreamTlsContext {
        common_tls_context: Some(common_tls_context(g, v)),
        // Different values, so that swapping the two field numbers is caught.
        require_client_certificate: Some(true),
        require_sni: Some(false),
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// Variant selectors: enough to reach every member of every oneof (the
/// largest has 5 members) directly and through the `v / 2`, `v / 3` nesting.
const VARIANTS: std::ops::Range<usize> = 0..12;

#[test]
fn type_and_matcher_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, et::Percent>(&percent(&mut g));
        roundtrip::<_, et::FractionalPercent>(&fractional_percent(&mut g));
        roundtrip::<_, et::Int64Range>(&int64_range(&mut g));
        roundtrip::<_, et::SemanticVersion>(&semantic_version(&mut g));
        roundtrip::<_, em::regex_matcher::GoogleRe2>(&google_re2(&mut g));
        roundtrip::<_, em::RegexMatcher>(&regex_matcher(&mut g));
        roundtrip::<_, em::RegexMatchAndSubstitute>(&regex_match_and_substitute(&mut g));
        roundtrip::<_, em::StringMatcher>(&string_matcher(&mut g, v));
        roundtrip::<_, em::ListStringMatcher>(&list_string_matcher(&mut g, v));
        roundtrip::<_, em::MetadataMatcher>(&om::MetadataMatcher {});
        roundtrip::<_, em::FilterStateMatcher>(&om::FilterStateMatcher {});
    }
}

#[test]
fn core_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, ec::Locality>(&locality(&mut g));
        roundtrip::<_, ec::BuildVersion>(&build_version(&mut g));
        roundtrip::<_, ec::Node>(&node(&mut g, v));
        roundtrip::<_, ec::Metadata>(&metadata(&mut g));
        roundtrip::<_, ec::HeaderValue>(&header_value(&mut g));
        roundtrip::<_, ec::HeaderValueOption>(&header_value_option(&mut g));
        roundtrip::<_, ec::HeaderMap>(&header_map(&mut g));
        roundtrip::<_, ec::DataSource>(&data_source(&mut g, v));
        roundtrip::<_, ec::TransportSocket>(&transport_socket(&mut g));
        roundtrip::<_, ec::RuntimeFractionalPercent>(&runtime_fractional_percent(&mut g));
        roundtrip::<_, ec::ControlPlane>(&control_plane(&mut g));
        roundtrip::<_, ec::TypedExtensionConfig>(&typed_extension_config(&mut g));
        roundtrip::<_, ec::Pipe>(&pipe(&mut g));
        roundtrip::<_, ec::SocketAddress>(&socket_address(&mut g, v));
        roundtrip::<_, ec::Address>(&address(&mut g, v));
        roundtrip::<_, ec::CidrRange>(&cidr_range(&mut g));
        roundtrip::<_, ec::TcpKeepalive>(&oc::TcpKeepalive {});
        roundtrip::<_, ec::BindConfig>(&oc::BindConfig {});
        roundtrip::<_, ec::SocketOption>(&oc::SocketOption {});
        roundtrip::<_, ec::DnsResolutionConfig>(&oc::DnsResolutionConfig {});
        roundtrip::<_, ec::SubstitutionFormatString>(&oc::SubstitutionFormatString {});
        roundtrip::<_, ec::SchemeHeaderTransformation>(&oc::SchemeHeaderTransformation {});
        roundtrip::<_, ec::grpc_service::EnvoyGrpc>(&envoy_grpc(&mut g));
        roundtrip::<_, ec::GrpcService>(&grpc_service(&mut g));
        roundtrip::<_, ec::ApiConfigSource>(&api_config_source(&mut g));
        roundtrip::<_, ec::AggregatedConfigSource>(&oc::AggregatedConfigSource {});
        roundtrip::<_, ec::SelfConfigSource>(&self_config_source());
        roundtrip::<_, ec::ConfigSource>(&config_source(&mut g, v));
        roundtrip::<_, ec::HttpProtocolOptions>(&http_protocol_options(&mut g));
        roundtrip::<_, ec::Http1ProtocolOptions>(&http1_protocol_options(&mut g));
        roundtrip::<_, ec::Http2ProtocolOptions>(&http2_protocol_options(&mut g));
        roundtrip::<_, ec::health_check::Payload>(&payload(&mut g, v));
        roundtrip::<_, ec::health_check::HttpHealthCheck>(&http_health_check(&mut g, v));
        roundtrip::<_, ec::health_check::TcpHealthCheck>(&tcp_health_check(&mut g, v));
        roundtrip::<_, ec::health_check::GrpcHealthCheck>(&grpc_health_check(&mut g));
        roundtrip::<_, ec::health_check::CustomHealthCheck>(&custom_health_check(&mut g));
        roundtrip::<_, ec::health_check::TlsOptions>(&tls_options(&mut g));
        roundtrip::<_, ec::ProxyProtocolConfig>(&oc::ProxyProtocolConfig {});
        roundtrip::<_, ec::HealthCheck>(&health_check(&mut g, v));
    }
}

#[test]
fn discovery_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, ew::google::rpc::Status>(&status(&mut g));
        roundtrip::<_, ed::DiscoveryRequest>(&discovery_request(&mut g, v));
        roundtrip::<_, ed::DiscoveryResponse>(&discovery_response(&mut g));
        roundtrip::<_, ed::DeltaDiscoveryRequest>(&delta_discovery_request(&mut g, v));
        roundtrip::<_, ed::resource::CacheControl>(&cache_control());
        roundtrip::<_, ed::Resource>(&resource(&mut g));
        roundtrip::<_, ed::DeltaDiscoveryResponse>(&delta_discovery_response(&mut g));
    }
}

#[test]
fn endpoint_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, ee::endpoint::HealthCheckConfig>(&health_check_config(&mut g, v));
        roundtrip::<_, ee::endpoint::AdditionalAddress>(&oe::endpoint::AdditionalAddress {
            address: Some(address(&mut g, v)),
        });
        roundtrip::<_, ee::Endpoint>(&endpoint(&mut g, v));
        roundtrip::<_, ee::LbEndpoint>(&lb_endpoint(&mut g, v));
        roundtrip::<_, ee::LocalityLbEndpoints>(&locality_lb_endpoints(&mut g, v));
        roundtrip::<_, ee::LedsClusterLocalityConfig>(&oe::LedsClusterLocalityConfig {});
        roundtrip::<_, ee::cluster_load_assignment::policy::DropOverload>(&drop_overload(&mut g));
        roundtrip::<_, ee::cluster_load_assignment::Policy>(&policy(&mut g));
        roundtrip::<_, ee::ClusterLoadAssignment>(&cluster_load_assignment(&mut g, v));
    }
}

#[test]
fn cluster_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, ecl::circuit_breakers::thresholds::RetryBudget>(&retry_budget(&mut g));
        roundtrip::<_, ecl::circuit_breakers::Thresholds>(&thresholds(&mut g));
        roundtrip::<_, ecl::CircuitBreakers>(&circuit_breakers(&mut g));
        roundtrip::<_, ecl::OutlierDetection>(&outlier_detection(&mut g));
        roundtrip::<_, ecl::cluster::CustomClusterType>(&custom_cluster_type(&mut g));
        roundtrip::<_, ecl::cluster::EdsClusterConfig>(&eds_cluster_config(&mut g, v));
        roundtrip::<_, ecl::cluster::LeastRequestLbConfig>(&least_request_lb_config(&mut g));
        roundtrip::<_, ecl::cluster::RoundRobinLbConfig>(&round_robin_lb_config());
        roundtrip::<_, ecl::cluster::SlowStartConfig>(&ocl::cluster::SlowStartConfig {});
        roundtrip::<_, ecl::cluster::QueuingPolicies>(&ocl::cluster::QueuingPolicies {});
        roundtrip::<_, ecl::UpstreamConnectionOptions>(&ocl::UpstreamConnectionOptions {});
        roundtrip::<_, ecl::cluster::RingHashLbConfig>(&ring_hash_lb_config(&mut g));
        roundtrip::<_, ecl::cluster::CommonLbConfig>(&common_lb_config(&mut g));
        roundtrip::<_, ecl::Cluster>(&cluster(&mut g, v));
    }
}

#[test]
fn upstream_http_protocol_options_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, eu::http_protocol_options::ExplicitHttpConfig>(&explicit_http_config(
            &mut g, v,
        ));
        roundtrip::<_, eu::http_protocol_options::UseDownstreamHttpConfig>(
            &use_downstream_http_config(&mut g),
        );
        roundtrip::<_, eu::http_protocol_options::AutoHttpConfig>(&auto_http_config(&mut g));
        roundtrip::<_, eu::HttpProtocolOptions>(&upstream_http_protocol_options(&mut g, v));
    }
}

#[test]
fn tls_messages() {
    let mut g = G::default();
    for v in VARIANTS {
        roundtrip::<_, etls::TlsParameters>(&tls_parameters(&mut g));
        roundtrip::<_, etls::TlsCertificate>(&tls_certificate(&mut g, v));
        roundtrip::<_, etls::SubjectAltNameMatcher>(&subject_alt_name_matcher(&mut g, v));
        roundtrip::<_, etls::CertificateValidationContext>(&certificate_validation_context(
            &mut g, v,
        ));
        roundtrip::<_, etls::SdsSecretConfig>(&sds_secret_config(&mut g, v));
        roundtrip::<_, etls::Secret>(&secret(&mut g, v));
        roundtrip::<_, etls::common_tls_context::CombinedCertificateValidationContext>(
            &combined_validation_context(&mut g, v),
        );
        roundtrip::<_, etls::CommonTlsContext>(&common_tls_context(&mut g, v));
        roundtrip::<_, etls::UpstreamTlsContext>(&upstream_tls_context(&mut g, v));
        roundtrip::<_, etls::DownstreamTlsContext>(&downstream_tls_context(&mut g, v));
    }
}

/// Plain `bool` fields can only be `true` when "set", so two bools of one
/// message with swapped numbers would pass the round trips above. Set each
/// one alone and check it lands on the same-named envoy-types field.
#[test]
fn bool_fields_are_not_swapped() {
    fn decode<T: Message + Default>(ours: &impl Message) -> T {
        T::decode(ours.encode_to_vec().as_slice()).unwrap()
    }

    let h1: ec::Http1ProtocolOptions = decode(&oc::Http1ProtocolOptions {
        accept_http_10: true,
        ..Default::default()
    });
    assert!(h1.accept_http_10 && !h1.enable_trailers);
    let h1: ec::Http1ProtocolOptions = decode(&oc::Http1ProtocolOptions {
        enable_trailers: true,
        ..Default::default()
    });
    assert!(!h1.accept_http_10 && h1.enable_trailers);

    let flags = |c: &ecl::Cluster| {
        [
            c.close_connections_on_host_health_failure,
            c.ignore_health_on_host_removal,
            c.connection_pool_per_downstream_connection,
        ]
    };
    let c: ecl::Cluster = decode(&ocl::Cluster {
        close_connections_on_host_health_failure: true,
        ..Default::default()
    });
    assert_eq!(flags(&c), [true, false, false]);
    let c: ecl::Cluster = decode(&ocl::Cluster {
        ignore_health_on_host_removal: true,
        ..Default::default()
    });
    assert_eq!(flags(&c), [false, true, false]);
    let c: ecl::Cluster = decode(&ocl::Cluster {
        connection_pool_per_downstream_connection: true,
        ..Default::default()
    });
    assert_eq!(flags(&c), [false, false, true]);
}

/// Every enum we define has exactly Envoy's values: same numbers, same names,
/// same gaps.
#[test]
fn enums_match_envoy() {
    macro_rules! same_enum {
        ($($ours:ty => $theirs:ty),* $(,)?) => {$(
            for i in -1..=64 {
                let ours = <$ours>::try_from(i).ok().map(|e| e.as_str_name());
                let theirs = <$theirs>::try_from(i).ok().map(|e| e.as_str_name());
                assert_eq!(ours, theirs, "{} value {i}", stringify!($ours));
            }
        )*};
    }
    same_enum! {
        oc::RoutingPriority => ec::RoutingPriority,
        oc::RequestMethod => ec::RequestMethod,
        oc::TrafficDirection => ec::TrafficDirection,
        oc::header_value_option::HeaderAppendAction => ec::header_value_option::HeaderAppendAction,
        oc::socket_address::Protocol => ec::socket_address::Protocol,
        oc::ApiVersion => ec::ApiVersion,
        oc::api_config_source::ApiType => ec::api_config_source::ApiType,
        oc::http_protocol_options::HeadersWithUnderscoresAction
            => ec::http_protocol_options::HeadersWithUnderscoresAction,
        oc::HealthStatus => ec::HealthStatus,
        ot::fractional_percent::DenominatorType => et::fractional_percent::DenominatorType,
        ot::CodecClientType => et::CodecClientType,
        ocl::cluster::DiscoveryType => ecl::cluster::DiscoveryType,
        ocl::cluster::LbPolicy => ecl::cluster::LbPolicy,
        ocl::cluster::DnsLookupFamily => ecl::cluster::DnsLookupFamily,
        ocl::cluster::ClusterProtocolSelection => ecl::cluster::ClusterProtocolSelection,
        ocl::cluster::ring_hash_lb_config::HashFunction
            => ecl::cluster::ring_hash_lb_config::HashFunction,
        otls::tls_parameters::TlsProtocol => etls::tls_parameters::TlsProtocol,
        otls::subject_alt_name_matcher::SanType => etls::subject_alt_name_matcher::SanType,
        otls::certificate_validation_context::TrustChainVerification
            => etls::certificate_validation_context::TrustChainVerification,
    }
}

/// The ADS service has Envoy's gRPC service name, so the method paths are
/// `/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources` etc.
#[test]
fn ads_service_name_matches_envoy() {
    assert_eq!(
        od::aggregated_discovery_service_server::SERVICE_NAME,
        ed::aggregated_discovery_service_server::SERVICE_NAME,
    );
    assert_eq!(
        od::aggregated_discovery_service_server::SERVICE_NAME,
        "envoy.service.discovery.v3.AggregatedDiscoveryService"
    );
}

/// A full Envoy message carrying fields we do not define still decodes into
/// our types: the unknown fields are skipped, ours come through intact.
#[test]
fn unknown_envoy_fields_are_skipped() {
    fn envoy<T: Message + Default>(ours: &impl Message) -> T {
        T::decode(ours.encode_to_vec().as_slice()).unwrap()
    }
    fn decode_ours<O: Message + Default>(theirs: &impl Message) -> O {
        O::decode(theirs.encode_to_vec().as_slice()).unwrap()
    }
    fn dur(seconds: i64) -> epb::Duration {
        epb::Duration { seconds, nanos: 0 }
    }
    let mut g = G::default();

    for v in VARIANTS {
        // Cluster, with unknown fields at the top and in nested messages.
        let ours = cluster(&mut g, v);
        let mut theirs: ecl::Cluster = envoy(&ours);
        theirs.respect_dns_ttl = true;
        theirs.wait_for_warm_on_init = Some(epb::BoolValue { value: true });
        theirs.use_tcp_for_dns_lookups = true;
        theirs.max_requests_per_connection = Some(epb::UInt32Value { value: 100 });
        theirs.preconnect_policy = Some(ecl::cluster::PreconnectPolicy {
            per_upstream_preconnect_ratio: Some(epb::DoubleValue { value: 1.5 }),
            ..Default::default()
        });
        theirs.lrs_server = Some(ec::ConfigSource {
            config_source_specifier: Some(ec::config_source::ConfigSourceSpecifier::Ads(
                ec::AggregatedConfigSource {},
            )),
            ..Default::default()
        });
        theirs.transport_socket_matches = vec![ecl::cluster::TransportSocketMatch {
            name: "tls".into(),
            ..Default::default()
        }];
        theirs.lb_subset_config = Some(ecl::cluster::LbSubsetConfig {
            locality_weight_aware: true,
            ..Default::default()
        });
        // Health checks: only the event logging fields are left out.
        let hc = &mut theirs.health_checks[0];
        hc.event_log_path = "/tmp/hc.log".into();
        hc.always_log_health_check_failures = true;
        hc.always_log_health_check_success = true;
        hc.event_logger = vec![ec::TypedExtensionConfig {
            name: "envoy.health_check.event_sinks.file".into(),
            typed_config: None,
        }];
        hc.event_service = Some(ec::EventServiceConfig::default());
        let od = theirs.outlier_detection.as_mut().unwrap();
        od.always_eject_one_host = Some(epb::BoolValue { value: true });
        od.detect_degraded_hosts = Some(epb::BoolValue { value: true });
        let cb = &mut theirs.circuit_breakers.as_mut().unwrap().thresholds[0];
        cb.retry_budget.as_mut().unwrap().budget_interval = Some(dur(3));
        let cla = theirs.load_assignment.as_mut().unwrap();
        cla.named_endpoints
            .insert("named".into(), ee::Endpoint::default());
        let lle = &mut cla.endpoints[0];
        lle.metadata = Some(ec::Metadata::default());
        lle.lb_endpoints[0].metadata.as_mut().unwrap();
        assert!(theirs.encoded_len() > ours.encoded_len());
        assert_eq!(decode_ours::<ocl::Cluster>(&theirs), ours);

        // Discovery messages.
        let ours = discovery_request(&mut g, v);
        let mut theirs: ed::DiscoveryRequest = envoy(&ours);
        theirs.resource_locators = vec![ed::ResourceLocator {
            name: "loc".into(),
            dynamic_parameters: HashMap::from([("k".into(), "v".into())]),
        }];
        let node = theirs.node.as_mut().unwrap();
        node.extensions = vec![ec::Extension {
            name: "ext".into(),
            ..Default::default()
        }];
        node.listening_addresses = vec![ec::Address::default()];
        assert!(theirs.encoded_len() > ours.encoded_len());
        assert_eq!(decode_ours::<od::DiscoveryRequest>(&theirs), ours);

        let ours = delta_discovery_response(&mut g);
        let mut theirs: ed::DeltaDiscoveryResponse = envoy(&ours);
        theirs.removed_resource_names = vec![ed::ResourceName {
            name: "gone".into(),
            ..Default::default()
        }];
        theirs.resources[0].metadata = Some(ec::Metadata::default());
        theirs.resources[1].resource_name = Some(ed::ResourceName {
            name: "named".into(),
            ..Default::default()
        });
        assert!(theirs.encoded_len() > ours.encoded_len());
        assert_eq!(decode_ours::<od::DeltaDiscoveryResponse>(&theirs), ours);

        // TLS context.
        let ours = upstream_tls_context(&mut g, v);
        let mut theirs: etls::UpstreamTlsContext = envoy(&ours);
        theirs.auto_host_sni = true;
        theirs.auto_sni_san_validation = true;
        let ctx = theirs.common_tls_context.as_mut().unwrap();
        ctx.key_log = Some(etls::TlsKeyLog {
            path: "/tmp/keys".into(),
            ..Default::default()
        });
        ctx.tls_params.as_mut().unwrap().signature_algorithms = vec!["ecdsa".into()];
        assert!(theirs.encoded_len() > ours.encoded_len());
        assert_eq!(decode_ours::<otls::UpstreamTlsContext>(&theirs), ours);
    }
}

/// A typical Envoy-built EDS cluster (not derived from our builders) decodes
/// into our types with the values Envoy's control planes send.
#[test]
fn envoy_built_cluster_decodes() {
    let theirs = ecl::Cluster {
        name: "backend".into(),
        cluster_discovery_type: Some(ecl::cluster::ClusterDiscoveryType::Type(
            ecl::cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(ecl::cluster::EdsClusterConfig {
            eds_config: Some(ec::ConfigSource {
                config_source_specifier: Some(ec::config_source::ConfigSourceSpecifier::Ads(
                    ec::AggregatedConfigSource {},
                )),
                resource_api_version: ec::ApiVersion::V3 as i32,
                ..Default::default()
            }),
            service_name: "backend-eds".into(),
        }),
        connect_timeout: Some(epb::Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        lb_policy: ecl::cluster::LbPolicy::LeastRequest as i32,
        wait_for_warm_on_init: Some(epb::BoolValue { value: false }),
        track_cluster_stats: Some(ecl::TrackClusterStats {
            timeout_budgets: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    let ours = ocl::Cluster::decode(theirs.encode_to_vec().as_slice()).unwrap();
    assert_eq!(ours.name, "backend");
    assert_eq!(
        ours.cluster_discovery_type,
        Some(ocl::cluster::ClusterDiscoveryType::Type(
            ocl::cluster::DiscoveryType::Eds as i32
        ))
    );
    let eds = ours.eds_cluster_config.as_ref().unwrap();
    assert_eq!(eds.service_name, "backend-eds");
    let cs = eds.eds_config.as_ref().unwrap();
    assert_eq!(
        cs.config_source_specifier,
        Some(oc::config_source::ConfigSourceSpecifier::Ads(
            oc::AggregatedConfigSource {}
        ))
    );
    assert_eq!(cs.resource_api_version, oc::ApiVersion::V3 as i32);
    assert_eq!(
        ours.connect_timeout,
        Some(prost_types::Duration {
            seconds: 1,
            nanos: 500_000_000
        })
    );
    assert_eq!(ours.lb_policy(), ocl::cluster::LbPolicy::LeastRequest);
}

/// Envoy messages whose fields our placeholders leave out
/// (UpstreamConnectionOptions, SlowStartConfig, BindConfig, ...) decode as
/// present (`Some`/non-empty), and the scalars next to them keep Envoy's
/// values: that is what the translation needs to refuse them.
#[test]
fn refused_fields_set_by_envoy_are_seen() {
    fn decode_ours<O: Message + Default>(theirs: &impl Message) -> O {
        O::decode(theirs.encode_to_vec().as_slice()).unwrap()
    }
    fn dur(seconds: i64) -> Option<epb::Duration> {
        Some(epb::Duration { seconds, nanos: 0 })
    }
    let u32v = |value| Some(epb::UInt32Value { value });
    let slow_start = || ecl::cluster::SlowStartConfig {
        slow_start_window: dur(30),
        ..Default::default()
    };
    let extension = |name: &str| ec::TypedExtensionConfig {
        name: name.into(),
        typed_config: Some(epb::Any {
            type_url: "type.googleapis.com/test.Extension".into(),
            value: vec![1, 2, 3],
        }),
    };

    let theirs = ecl::Cluster {
        name: "c".into(),
        dns_resolvers: vec![ec::Address::default(), ec::Address::default()],
        dns_resolution_config: Some(ec::DnsResolutionConfig {
            resolvers: vec![ec::Address::default()],
            ..Default::default()
        }),
        typed_dns_resolver_config: Some(extension("envoy.network.dns_resolver.cares")),
        transport_socket_matcher: Some(ew::xds::r#type::matcher::v3::Matcher {
            on_no_match: Some(Box::new(ew::xds::r#type::matcher::v3::matcher::OnMatch {
                keep_matching: true,
                ..Default::default()
            })),
            ..Default::default()
        }),
        upstream_bind_config: Some(ec::BindConfig {
            freebind: Some(epb::BoolValue { value: true }),
            ..Default::default()
        }),
        upstream_connection_options: Some(ecl::UpstreamConnectionOptions {
            tcp_keepalive: Some(ec::TcpKeepalive {
                keepalive_time: u32v(30),
                ..Default::default()
            }),
            ..Default::default()
        }),
        common_http_protocol_options: Some(ec::HttpProtocolOptions {
            idle_timeout: dur(60),
            ..Default::default()
        }),
        connection_pool_per_downstream_connection: true,
        queuing_policies: Some(ecl::cluster::QueuingPolicies {
            pending_rq_policy: Some(extension("lifo")),
        }),
        per_connection_buffer_high_watermark_timeout: dur(5),
        lb_config: Some(ecl::cluster::LbConfig::RoundRobinLbConfig(
            ecl::cluster::RoundRobinLbConfig {
                slow_start_config: Some(slow_start()),
            },
        )),
        ..Default::default()
    };
    let ours: ocl::Cluster = decode_ours(&theirs);
    assert_eq!(ours.dns_resolvers.len(), 2);
    assert_eq!(ours.dns_resolution_config, Some(oc::DnsResolutionConfig {}));
    let t = ours.typed_dns_resolver_config.as_ref().unwrap();
    assert_eq!(t.name, "envoy.network.dns_resolver.cares");
    assert_eq!(
        ours.transport_socket_matcher,
        Some(ow::xds::r#type::matcher::v3::Matcher {})
    );
    assert_eq!(ours.upstream_bind_config, Some(oc::BindConfig {}));
    assert_eq!(
        ours.upstream_connection_options,
        Some(ocl::UpstreamConnectionOptions {})
    );
    let h = ours.common_http_protocol_options.as_ref().unwrap();
    assert_eq!(h.idle_timeout.map(|d| d.seconds), Some(60));
    assert!(ours.connection_pool_per_downstream_connection);
    assert_eq!(
        ours.queuing_policies,
        Some(ocl::cluster::QueuingPolicies {})
    );
    assert_eq!(
        ours.per_connection_buffer_high_watermark_timeout
            .map(|d| d.seconds),
        Some(5)
    );
    assert_eq!(
        ours.lb_config,
        Some(ocl::cluster::LbConfig::RoundRobinLbConfig(
            ocl::cluster::RoundRobinLbConfig {
                slow_start_config: Some(ocl::cluster::SlowStartConfig {}),
            }
        ))
    );

    let theirs = ecl::cluster::LeastRequestLbConfig {
        choice_count: u32v(2),
        slow_start_config: Some(slow_start()),
        ..Default::default()
    };
    let ours: ocl::cluster::LeastRequestLbConfig = decode_ours(&theirs);
    assert_eq!(ours.choice_count, Some(2));
    assert_eq!(
        ours.slow_start_config,
        Some(ocl::cluster::SlowStartConfig {})
    );

    let theirs = ee::LocalityLbEndpoints {
        priority: 1,
        lb_config: Some(
            ee::locality_lb_endpoints::LbConfig::LedsClusterLocalityConfig(
                ee::LedsClusterLocalityConfig {
                    leds_config: Some(ec::ConfigSource::default()),
                    leds_collection_name: "xdstp://leds".into(),
                },
            ),
        ),
        ..Default::default()
    };
    let ours: oe::LocalityLbEndpoints = decode_ours(&theirs);
    assert_eq!(ours.priority, 1);
    assert_eq!(
        ours.lb_config,
        Some(
            oe::locality_lb_endpoints::LbConfig::LedsClusterLocalityConfig(
                oe::LedsClusterLocalityConfig {}
            )
        )
    );
}
