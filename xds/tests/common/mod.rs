//! Shared by the integration tests (and `benches/fanout.rs`, which
//! includes `sim.rs` by path).

pub mod sim;
