//! Setup shared by the kernel's ring and agent-facts tests.
#![allow(dead_code)]

use std::sync::Arc;
use warden_identity::{TrustBook, TrustConfig};
use warden_kernel::Kernel;
use warden_policy::{PolicyHandle, PolicySet};

/// An in-memory trust book whose unknown agents start at `baseline`.
pub fn book(baseline: f64) -> Arc<TrustBook> {
    Arc::new(TrustBook::in_memory(TrustConfig {
        baseline,
        ..TrustConfig::default()
    }))
}

/// A kernel for `policy`, fed by `trust` when given.
pub fn kernel(policy: &str, trust: Option<Arc<TrustBook>>) -> Kernel {
    let b = Kernel::builder(PolicyHandle::new(PolicySet::from_yaml(policy).unwrap()));
    match trust {
        Some(t) => b.trust(t),
        None => b,
    }
    .build()
    .unwrap()
}
