//! Legate's configuration model and the loaders that produce it.
//!
//! The model in [`model`] is the only configuration language inside Legate:
//! the static YAML file ([`static_file`]) and xDS ([`translate`], driven by
//! the ADS client in [`client`]) both translate into it. The data plane never
//! sees anything else.

pub mod client;
pub mod control_plane;
pub mod duration;
pub mod logging;
pub mod mesh;
pub mod model;
pub mod registry;
pub mod server;
pub mod static_file;
pub mod translate;
pub mod validate;

/// The wire types: Legate's subset of Envoy's v3 API (same packages,
/// messages and field numbers) and Legate's own gRPC APIs, generated from
/// `proto/` by prost and tonic. Nothing outside the xDS translation and the
/// gRPC clients and servers uses them.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod wire {
    include!(concat!(env!("OUT_DIR"), "/wire.rs"));
}

pub use static_file::{ConfigError, load_file, parse_str};
pub use validate::{FieldError, validate};
