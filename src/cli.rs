//! Command line: `legate run`, `legate validate`, `legate demo`.

use clap::{Parser, Subcommand};
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
    Run {
        /// Static configuration (listeners, clusters, and optionally a
        /// `dynamic` section naming the control plane).
        #[arg(long, short, required_unless_present = "xds")]
        config: Option<PathBuf>,
        /// Control plane address (`host:port`) for ADS; sets or overrides
        /// the file's `dynamic.servers`.
        #[arg(long, requires = "node_id")]
        xds: Option<String>,
        /// Node id sent to the control plane (with `--xds`).
        #[arg(long)]
        node_id: Option<String>,
        /// ADS variant: `sotw` (state of the world) or `delta`.
        #[arg(long, default_value = "sotw", value_parser = ["sotw", "delta"])]
        xds_api: String,
        /// Node metadata for the control plane, `KEY=VALUE` (repeatable;
        /// with `--xds`). `legate-xds` reads `service`, `namespace`,
        /// `outbound_address`, `inbound_address` and `app_address`.
        #[arg(long = "node-meta", value_name = "KEY=VALUE", requires = "xds", value_parser = parse_key_value)]
        node_meta: Vec<(String, String)>,
    },
    /// Check configuration files; prints every error with its field path.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
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
