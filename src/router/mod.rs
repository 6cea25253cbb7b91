//! The router's stack below route matching: what happens to a request on
//! its way to the cluster. Each concern is a `tower::Layer`, composed in
//! `http::service` for the routes that configure it: retries
//! ([`retry`]) over one try (load balancing and the endpoint pool, in
//! `http::service::forward` and [`crate::cluster`]).

pub mod retry;
