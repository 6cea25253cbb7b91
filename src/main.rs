use clap::Parser;
use legate::cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("LEGATE_LOG").unwrap_or_else(|_| cli.log_level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    if let Command::Validate { files } = &cli.command {
        return validate(files);
    }

    let threads = cli.concurrency.or_else(|| {
        std::env::var("LEGATE_WORKER_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    // One worker: tokio's single-threaded scheduler, with no work-stealing
    // queues or cross-thread wake-ups to pay for (it runs on this thread).
    let mut builder = if threads == Some(1) {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().thread_name("legate-worker");
    if let Some(n) = threads.filter(|n| *n > 1) {
        builder.worker_threads(n);
    }
    let rt = match builder.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match cli.command {
            Command::Run {
                config,
                xds,
                node_id,
                xds_api,
                node_meta,
            } => run(config.as_deref(), xds, node_id, &xds_api, node_meta).await,
            Command::Demo { listen, admin } => legate::demo::run(&listen, &admin).await,
            Command::Validate { .. } => ExitCode::FAILURE,
        }
    })
}

fn validate(files: &[std::path::PathBuf]) -> ExitCode {
    let mut ok = true;
    for f in files {
        match legate_xds::load_file(f) {
            Ok(_) => println!("{}: ok", f.display()),
            Err(e) => {
                ok = false;
                for m in e.messages() {
                    eprintln!("{}: {m}", f.display());
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

async fn run(
    path: Option<&std::path::Path>,
    xds: Option<String>,
    node_id: Option<String>,
    xds_api: &str,
    node_meta: Vec<(String, String)>,
) -> ExitCode {
    let mut config = match path {
        Some(path) => match legate_xds::load_file(path) {
            Ok(c) => c,
            Err(e) => {
                for m in e.messages() {
                    eprintln!("error: {}: {m}", path.display());
                }
                return ExitCode::FAILURE;
            }
        },
        None => legate_xds::model::Config::default(),
    };
    if let (Some(server), Some(node_id)) = (xds, node_id) {
        let api = if xds_api == "delta" {
            legate_xds::model::XdsApi::Delta
        } else {
            legate_xds::model::XdsApi::Sotw
        };
        match &mut config.dynamic {
            Some(d) => {
                d.servers = vec![server];
                d.node.id = node_id;
                d.api = api;
            }
            None => {
                config.dynamic = Some(legate_xds::model::Dynamic::new(&server, &node_id, api));
            }
        }
    }
    if let Some(d) = &mut config.dynamic {
        for (k, v) in node_meta {
            d.node.metadata.insert(k, serde_json::Value::String(v));
        }
    }
    match legate::start(config).await {
        Ok(proxy) => {
            proxy.serve_until_stopped().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
