use clap::Parser;
use legate::cli::{Cli, Command, RunArgs};
use legate_xds::registry::agent::{Agent, AgentOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    legate_xds::logging::init(&cli.log_level);

    if let Command::Validate { files } = &cli.command {
        return validate(files);
    }
    if let Command::Iptables { action } = &cli.command {
        return legate::iptables::main(action);
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
            Command::Run(args) => run(*args).await,
            Command::Demo { listen, admin } => legate::demo::run(&listen, &admin).await,
            Command::Validate { .. } | Command::Iptables { .. } => ExitCode::FAILURE,
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

async fn run(args: RunArgs) -> ExitCode {
    let mut config = match &args.config {
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
    if let (Some(server), Some(node_id)) = (&args.xds, &args.node_id) {
        let api = if args.xds_api == "delta" {
            legate_xds::model::XdsApi::Delta
        } else {
            legate_xds::model::XdsApi::Sotw
        };
        match &mut config.dynamic {
            Some(d) => {
                d.servers = vec![server.clone()];
                d.node.id = node_id.clone();
                d.api = api;
            }
            None => {
                config.dynamic = Some(legate_xds::model::Dynamic::new(server, node_id, api));
            }
        }
    }
    if let Some(d) = &mut config.dynamic {
        let meta = &mut d.node.metadata;
        if let (Some(service), Some(port)) = (&args.register, args.app_port) {
            // What the control plane needs to build this workload's
            // inbound listener; explicit --node-meta wins.
            meta.insert("service".into(), service.clone().into());
            meta.insert("namespace".into(), args.namespace.clone().into());
            meta.insert("app_address".into(), format!("127.0.0.1:{port}").into());
        }
        for (k, v) in &args.node_meta {
            meta.insert(k.clone(), serde_json::Value::String(v.clone()));
        }
    }
    let proxy = match legate::start(config).await {
        Ok(proxy) => proxy,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let agent = match (&args.register, &args.xds, args.app_port) {
        (Some(service), Some(server), Some(port)) => {
            Some(registration(&proxy, &args, service, server, port))
        }
        _ => None,
    };
    let Some(agent) = agent else {
        proxy.serve_until_stopped().await;
        return ExitCode::SUCCESS;
    };
    let mut proxy = proxy;
    proxy.stop_requested().await;
    // Callers stop sending here before the listeners drain.
    agent.deregister().await;
    proxy.drain_and_log().await;
    ExitCode::SUCCESS
}

/// Registers the application behind this sidecar's inbound listener.
fn registration(
    proxy: &legate::RunningProxy,
    args: &RunArgs,
    service: &str,
    server: &str,
    app_port: u16,
) -> Agent {
    let handle = proxy.handle();
    let advertise_ip = args.advertise_ip;
    let warned = std::sync::atomic::AtomicBool::new(false);
    let advertise = move || {
        let mut a = handle.listener_addr("inbound")?;
        if a.ip().is_unspecified() {
            let ip = advertise_ip.unwrap_or_else(|| {
                if !warned.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::warn!("the inbound listener binds {a}; registering 127.0.0.1 (set --advertise-ip to the address callers use)");
                }
                std::net::Ipv4Addr::LOCALHOST.into()
            });
            a.set_ip(ip);
        }
        Some(a)
    };
    Agent::spawn(
        AgentOptions {
            server: server.to_string(),
            service: service.to_string(),
            namespace: args.namespace.clone(),
            service_port: 0,
            labels: args.labels.iter().cloned().collect(),
            app: std::net::SocketAddr::from(([127, 0, 0, 1], app_port)),
            health_path: args.health_path.clone(),
            ttl: args.register_ttl,
            interval: (args.register_ttl / 3).clamp(
                std::time::Duration::from_millis(50),
                std::time::Duration::from_secs(5),
            ),
        },
        advertise,
    )
}
