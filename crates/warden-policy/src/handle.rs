//! Hot reload: the live policy set behind an atomic pointer swap.

use crate::error::PolicyError;
use crate::set::PolicySet;
use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The live policy set. Readers never block and never see a half-loaded
/// set; a reload that fails keeps the old set in force.
#[derive(Debug)]
pub struct PolicyHandle {
    current: ArcSwap<PolicySet>,
    paths: Vec<PathBuf>,
}

impl PolicyHandle {
    /// Loads `paths`; there is no handle without a valid policy.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<Self, PolicyError> {
        let set = PolicySet::load(paths)?;
        Ok(PolicyHandle {
            current: ArcSwap::from_pointee(set),
            paths: paths.iter().map(|p| p.as_ref().to_path_buf()).collect(),
        })
    }

    /// Wraps an already compiled set (reload then re-reads no files and fails).
    pub fn new(set: PolicySet) -> Self {
        PolicyHandle {
            current: ArcSwap::from_pointee(set),
            paths: Vec::new(),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<PolicySet> {
        self.current.load_full()
    }

    /// A cheap guard on the set in force, for a single evaluation.
    pub fn guard(&self) -> arc_swap::Guard<Arc<PolicySet>> {
        self.current.load()
    }

    /// Re-reads the original paths and swaps the new set in; on error the old set stays.
    pub fn reload(&self) -> Result<Arc<PolicySet>, PolicyError> {
        let set = Arc::new(PolicySet::load(&self.paths)?);
        self.current.store(Arc::clone(&set));
        Ok(set)
    }

    /// Swaps in a set compiled elsewhere.
    pub fn replace(&self, set: PolicySet) {
        self.current.store(Arc::new(set));
    }
}
