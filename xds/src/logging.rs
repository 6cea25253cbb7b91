//! Logging for Legate's binaries: to stderr, filtered by `LEGATE_LOG` or
//! the `--log-level` flag (`info`, `debug`, `legate=debug`, ...); an invalid
//! filter falls back to `info`.

pub fn init(log_level: &str) {
    let filter = std::env::var("LEGATE_LOG").unwrap_or_else(|_| log_level.to_string());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
