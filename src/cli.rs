//! Command line: `legate run`, `legate validate`, `legate demo`,
//! `legate iptables`.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "legate",
    version,
    about = "A small, fast sidecar proxy for service meshes"
)]
pub struct Cli {
    /// Log filter (also LEGATE_LOG), e.g. `info`, `legate=debug`.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Worker threads (also LEGATE_WORKER_THREADS); default: one per core.
    #[arg(long, global = true)]
    pub concurrency: Option<usize>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the proxy from a static YAML file, a control plane (xDS), or both.
    Run(Box<RunArgs>),
    /// Check configuration files; prints every error with its field path.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Install, print or remove the iptables rules that send a pod's
    /// inbound and outbound TCP through the sidecar (run in the pod's
    /// network namespace, with NET_ADMIN, as Istio's init container).
    Iptables {
        #[command(subcommand)]
        action: crate::iptables::IptablesCommand,
    },
    /// Run a self-contained demo: two upstream services behind Legate,
    /// traffic split 80/20 between them.
    Demo {
        /// Address of the demo's proxy listener.
        #[arg(long, default_value = "127.0.0.1:10000")]
        listen: String,
        /// Address of the admin server.
        #[arg(long, default_value = "127.0.0.1:15000")]
        admin: String,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    legate_xds::duration::parse_duration(s)
}

/// `legate run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Static configuration (listeners, clusters, and optionally a
    /// `dynamic` section naming the control plane).
    #[arg(long, short, required_unless_present = "xds")]
    pub config: Option<PathBuf>,
    /// Control plane address (`host:port`) for ADS; sets or overrides
    /// the file's `dynamic.servers`.
    #[arg(long, requires = "node_id")]
    pub xds: Option<String>,
    /// Node id sent to the control plane (with `--xds`).
    #[arg(long)]
    pub node_id: Option<String>,
    /// ADS variant: `sotw` (state of the world) or `delta`.
    #[arg(long, default_value = "sotw", value_parser = ["sotw", "delta"])]
    pub xds_api: String,
    /// Node metadata for the control plane, `KEY=VALUE` (repeatable;
    /// with `--xds`). `legate-xds` reads `service`, `namespace`,
    /// `outbound_address`, `inbound_address` and `app_address`.
    #[arg(long = "node-meta", value_name = "KEY=VALUE", requires = "xds", value_parser = parse_key_value)]
    pub node_meta: Vec<(String, String)>,
    /// Register this sidecar's application as a workload of SERVICE
    /// with the control plane (`--xds`): once the inbound listener is up
    /// and the application healthy, heartbeat while it stays healthy,
    /// deregister on drain. Also tells the control plane (node
    /// metadata) which service this sidecar serves.
    #[arg(long, value_name = "SERVICE", requires_all = ["xds", "app_port"])]
    pub register: Option<String>,
    /// The registered workload's namespace.
    #[arg(long, default_value = "default", requires = "register")]
    pub namespace: String,
    /// Port of the application on 127.0.0.1 (inbound traffic goes there;
    /// health checks too).
    #[arg(long, requires = "register")]
    pub app_port: Option<u16>,
    /// HTTP path the application answers 2xx/3xx on while healthy;
    /// without it, health is a TCP connect to the application.
    #[arg(long, requires = "register")]
    pub health_path: Option<String>,
    /// Registration TTL: callers stop sending to this workload this
    /// long after its heartbeats stop.
    #[arg(long, default_value = "10s", value_parser = parse_duration, requires = "register")]
    pub register_ttl: std::time::Duration,
    /// Workload labels, `KEY=VALUE` (repeatable; e.g. `version=v2`).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_key_value, requires = "register")]
    pub labels: Vec<(String, String)>,
    /// IP address callers reach this sidecar at, when its inbound
    /// listener binds a wildcard address (default 127.0.0.1; in a pod,
    /// the pod IP).
    #[arg(long, requires = "register")]
    pub advertise_ip: Option<std::net::IpAddr>,
}
