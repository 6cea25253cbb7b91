//! HTTP filters that act on a request before the router forwards it, each
//! a `tower::Layer` over the service that carries out the route's action.
//! They are composed in one place, `http::service::route_request`, and only
//! for routes that configure them (other routes pay nothing).

pub mod fault;
pub mod ratelimit;
