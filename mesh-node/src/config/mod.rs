//! Configuration: a TOML file and flags become one typed tree per role.
//!
//! Every field has a default, so an empty file (or none) is a working
//! configuration. Unknown fields are refused, and every error names the
//! file, the line and the field.

mod agent;
mod duration;
mod server;

use std::path::{Path, PathBuf};

pub use agent::{AgentConfig, DEFAULT_AGENT_DATA_DIR};
pub use server::{
    BundleEndpointSettings, CaSettings, DEFAULT_SERVER_DATA_DIR, FederationSettings,
    RelationshipSettings, ServerConfig,
};

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this role; the message names the
    /// line, the column and the field.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, and where.
        message: String,
    },
    /// A value is well-formed but cannot work.
    #[error("{field}: {message}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        message: String,
    },
}

/// Reads `path` as `T`, or `T::default()` when there is no file.
pub(crate) fn load<T>(path: Option<&Path>) -> Result<T, ConfigError>
where
    T: serde::de::DeserializeOwned + Default,
{
    let Some(path) = path else {
        return Ok(T::default());
    };
    parse(path, &read_text(path)?)
}

/// A configuration file's text.
pub(crate) fn read_text(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses `text`, read from `path`.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: one_line(&e, text),
    })
}

/// toml's message as one line: "line L, column C: message (field `a.b`)".
fn one_line(e: &toml::de::Error, input: &str) -> String {
    let msg = e.message().trim().to_owned();
    let Some(span) = e.span() else {
        return msg;
    };
    let before = input.get(..span.start).unwrap_or(input);
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}: {msg}")
}
