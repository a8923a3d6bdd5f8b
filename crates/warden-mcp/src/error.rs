//! Gateway errors (calls themselves never error: they fail closed into deny results).

use std::path::PathBuf;

/// Why the gateway could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    /// The tool pin store could not be read or written.
    #[error("tool pins {path}: {message}")]
    Pins {
        /// The pin file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The upstream MCP server could not be started or reached.
    #[error("upstream MCP server: {0}")]
    Upstream(String),
    /// Client authentication is not set up (a bad token, or none where one
    /// is needed: the message says how to set one).
    #[error("client authentication: {0}")]
    Auth(String),
    /// Reading from or writing to the client failed.
    #[error("client transport: {0}")]
    Io(#[from] std::io::Error),
    /// The kernel could not be built.
    #[error(transparent)]
    Kernel(#[from] warden_kernel::KernelError),
}
