//! The static YAML configuration file -> [`Config`].

use crate::model::Config;
use crate::validate::{FieldError, validate};
use std::fmt;
use std::path::Path;

/// Why a configuration was refused. Refusal is always whole: no part of a
/// refused configuration is applied.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Syntax(String),
    #[error("{}", Invalid(.0))]
    Invalid(Vec<FieldError>),
}

struct Invalid<'a>(&'a [FieldError]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// One message per problem, each naming the offending field.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ConfigError::Invalid(errors) => errors.iter().map(|e| e.to_string()).collect(),
            other => vec![other.to_string()],
        }
    }
}

/// Parses and validates a configuration from YAML text.
pub fn parse_str(text: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml_ng::Deserializer::from_str(text);
    let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = strip_yaml_path(&e.into_inner().to_string()).to_string();
        // serde_yaml_ng sometimes names the path itself; say it once.
        if path == "." || path.is_empty() || inner.starts_with(&format!("{path}: ")) {
            ConfigError::Syntax(inner)
        } else {
            ConfigError::Syntax(format!("{path}: {inner}"))
        }
    })?;
    for listener in &mut config.listeners {
        listener.normalize();
    }
    let errors = validate(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// serde_yaml_ng prefixes custom errors with its own (coarser) path, e.g.
/// `clusters[0]: invalid duration ...`; we report the exact one instead.
fn strip_yaml_path(msg: &str) -> &str {
    if let Some((head, rest)) = msg.split_once(": ") {
        let path_like = !head.is_empty()
            && head
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'[' | b']' | b'.'));
        if path_like {
            return rest;
        }
    }
    msg
}

/// Reads, parses and validates a configuration file.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse_str(&text)
}
