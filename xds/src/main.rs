//! `legate-xds`: Legate's control plane.

use clap::{Parser, Subcommand};
use legate_xds::control_plane::{ControlPlane, Options};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "legate-xds",
    version,
    about = "Legate's control plane: a mesh description served as xDS"
)]
struct Cli {
    /// Log filter (`info`, `debug`, `legate_xds=debug`); LEGATE_LOG overrides it.
    #[arg(long, default_value = "info", global = true)]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the mesh over ADS (state of the world and delta on one port),
    /// pushing changes when its files change.
    Serve {
        /// A mesh file, or a directory of *.yaml / *.yml mesh files.
        #[arg(long)]
        mesh: PathBuf,
        /// ADS address.
        #[arg(long, default_value = "127.0.0.1:15010")]
        listen: String,
        /// Admin address (/metrics, /proxies, /ready).
        #[arg(long, default_value = "127.0.0.1:15014")]
        admin: String,
        /// How often the mesh files are checked for changes.
        #[arg(long, default_value = "250ms", value_parser = parse_duration)]
        watch_interval: Duration,
        /// How long a registered workload that stopped heartbeating is kept
        /// (unhealthy) before it is removed.
        #[arg(long, default_value = "5m", value_parser = parse_duration)]
        reap_after: Duration,
        /// Where registered workloads are kept: in memory (default), or
        /// `etcd://host:port` so several control-plane replicas share them.
        #[arg(long)]
        registry: Option<String>,
    },
    /// Check mesh files without serving them.
    Validate {
        /// Mesh files or directories.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    legate_xds::duration::parse_duration(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    legate_xds::logging::init(&cli.log_level);
    match cli.command {
        Command::Validate { files } => validate(&files),
        Command::Serve {
            mesh,
            listen,
            admin,
            watch_interval,
            reap_after,
            registry,
        } => serve(Options {
            mesh,
            listen,
            admin: Some(admin),
            watch_interval,
            reap_after,
            registry,
        }),
    }
}

fn validate(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match legate_xds::mesh::load(f) {
            Ok(m) => println!("{}: ok ({} services)", f.display(), m.services.len()),
            Err(errors) => {
                ok = false;
                for e in errors {
                    eprintln!("{e}");
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn serve(opts: Options) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("legate-xds")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("warning: metrics are off: {e}");
            None
        }
    };
    rt.block_on(async move {
        let cp = match ControlPlane::start(opts, metrics).await {
            Ok(cp) => cp,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(a) = cp.admin_addr {
            tracing::info!(%a, "admin");
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        cp.shutdown().await;
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
