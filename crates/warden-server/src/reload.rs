//! Policy hot reload: on file changes (debounced), `SIGHUP` or `POST /v1/reload`.
//!
//! A reload compiles the whole new set first and swaps it in atomically; a set
//! that fails to compile is rejected with its error logged and the old one
//! stays in force, so there is never a moment without a policy.

use crate::metrics::Metrics;
use notify::{EventKind, RecursiveMode, Watcher as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;
use warden_kernel::Kernel;

/// Quiet time after the last file event before reloading: editors and
/// `git checkout` touch many files in a burst.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Where the policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// Files and directories, re-read on reload.
    Paths(Vec<PathBuf>),
    /// The default pack compiled into the binary (nothing to reload).
    Builtin,
}

/// Reloads the kernel's policy and reports the result.
pub struct Reloader {
    kernel: Arc<Kernel>,
    metrics: Arc<Metrics>,
    source: PolicySource,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// A reload that did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new policy failed to compile; the old one is in force.
    #[error("{0}")]
    Rejected(String),
    /// The built-in pack is compiled in; there is nothing to re-read.
    #[error("the built-in default pack is in use; start with --policy to reload from files")]
    Builtin,
}

impl Reloader {
    /// A reloader for `kernel`'s policy from `source`.
    pub fn new(kernel: Arc<Kernel>, metrics: Arc<Metrics>, source: PolicySource) -> Self {
        Reloader {
            kernel,
            metrics,
            source,
        }
    }

    /// What `/readyz` shows as the policy origin.
    pub fn label(&self) -> String {
        match &self.source {
            PolicySource::Builtin => crate::pack::LABEL.to_owned(),
            PolicySource::Paths(p) => p
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Reloads now (blocking: reads and compiles files). Returns the new policy hash.
    pub fn reload(&self, trigger: &str) -> Result<String, ReloadError> {
        if self.source == PolicySource::Builtin {
            return Err(ReloadError::Builtin);
        }
        let before = self.kernel.policy().hash().to_owned();
        match self.kernel.reload_policy() {
            Ok(set) => {
                self.metrics.reload(true);
                let hash = set.hash().to_owned();
                if hash == before {
                    tracing::info!(trigger, policy_hash = %hash, "policy reloaded (unchanged)");
                } else {
                    tracing::info!(trigger, policy_hash = %hash, previous = %before, "policy reloaded");
                }
                Ok(hash)
            }
            Err(e) => {
                self.metrics.reload(false);
                tracing::error!(trigger, error = %e, "new policy rejected; the previous policy stays in force");
                Err(ReloadError::Rejected(e.to_string()))
            }
        }
    }

    /// Watches the policy paths and reloads after each burst of changes, on a
    /// thread of its own, for as long as the returned watcher lives.
    pub fn watch(self: &Arc<Self>) -> Result<Option<notify::RecommendedWatcher>, notify::Error> {
        let PolicySource::Paths(paths) = &self.source else {
            return Ok(None);
        };
        let (tx, rx) = channel::<()>();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            match ev {
                // Reads (our own reloads among them) are not changes.
                Ok(e) if matches!(e.kind, EventKind::Access(_)) => {}
                _ => {
                    let _ = tx.send(());
                }
            }
        })?;
        for p in paths {
            if p.is_dir() {
                watcher.watch(p, RecursiveMode::Recursive)?;
            } else {
                // Editors replace files by rename: watch the directory holding the file.
                let parent = p
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(std::path::Path::new("."));
                watcher.watch(parent, RecursiveMode::NonRecursive)?;
            }
        }
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name("warden-policy-watch".to_owned())
            .spawn(move || {
                while rx.recv().is_ok() {
                    // Wait for the burst to end.
                    loop {
                        match rx.recv_timeout(DEBOUNCE) {
                            Ok(()) => continue,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                    let _ = me.reload("file change");
                }
            })
            .map_err(notify::Error::io)?;
        Ok(Some(watcher))
    }
}
