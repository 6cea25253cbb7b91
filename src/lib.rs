//! Legate: a sidecar data-plane proxy for service meshes.
//!
//! Read in request order: [`listener`] accepts and picks a filter chain,
//! [`http`] serves the connection and runs the request pipeline, [`route`]
//! matches and rewrites, [`cluster`] balances and pools, [`tcp`] proxies
//! opaque streams, [`telemetry`] counts, [`admin`] shows. [`proxy`] ties
//! them together from a configuration model.

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod demo;
pub mod filters;
pub mod http;
pub mod iptables;
pub mod listener;
pub mod proxy;
pub mod route;
pub mod router;
pub mod tcp;
pub mod telemetry;

pub use legate_xds::model;
pub use proxy::{ProxyHandle, RunningProxy, StartError, start};
