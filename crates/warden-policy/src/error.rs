//! Load-time errors: every one names the file, line, column and field.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where in a policy source something was written (1-based; 0 = unknown).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file it came from.
    pub file: PathBuf,
    /// 1-based line, 0 if unknown.
    pub line: u64,
    /// 1-based column, 0 if unknown.
    pub column: u64,
}

impl Origin {
    pub(crate) fn new(file: &Path, line: u64, column: u64) -> Self {
        Origin {
            file: file.to_path_buf(),
            line,
            column,
        }
    }

    pub(crate) fn at(file: &Path, loc: serde_saphyr::Location) -> Self {
        Origin::new(file, loc.line(), loc.column())
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        Ok(())
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The source is invalid: bad YAML, unknown field, bad value.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// Where.
        origin: Origin,
        /// The field at fault (dotted path such as `rules[2].when`), or `document`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// No policy sources were given or found: Warden refuses to run without one.
    #[error("no policy loaded: {0}")]
    NoPolicy(String),
    /// `warden policy test` found no test files.
    #[error("no tests found: {0}")]
    NoTests(String),
}

impl PolicyError {
    pub(crate) fn invalid(
        origin: Origin,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        PolicyError::Invalid {
            origin,
            field: field.into(),
            message: message.into(),
        }
    }
}
