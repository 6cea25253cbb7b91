//! Legate's configuration model and the loaders that produce it.
//!
//! The model in [`model`] is the only configuration language inside Legate:
//! the static YAML file ([`static_file`]) and, later, xDS both translate into
//! it. The data plane never sees anything else.

pub mod duration;
pub mod model;
pub mod static_file;
pub mod validate;

pub use static_file::{ConfigError, load_file, parse_str};
pub use validate::{FieldError, validate};
