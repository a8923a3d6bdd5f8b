//! The shipped default policy pack (`policies/default`), compiled into the
//! binary so `warden serve` works from any directory with no configuration.

use std::path::PathBuf;
use warden_policy::Source;

/// The pack's policy files (its `*_test.yaml` files are not policy).
const FILES: [(&str, &str); 6] = [
    (
        "00-base.yaml",
        include_str!("../../../policies/default/00-base.yaml"),
    ),
    (
        "files.yaml",
        include_str!("../../../policies/default/files.yaml"),
    ),
    (
        "outbound.yaml",
        include_str!("../../../policies/default/outbound.yaml"),
    ),
    (
        "secrets.yaml",
        include_str!("../../../policies/default/secrets.yaml"),
    ),
    (
        "shell.yaml",
        include_str!("../../../policies/default/shell.yaml"),
    ),
    (
        "sql.yaml",
        include_str!("../../../policies/default/sql.yaml"),
    ),
];

/// The label prefix error messages and `/readyz` show for built-in files.
pub const LABEL: &str = "<builtin>/policies/default";

/// The default pack as in-memory policy sources.
pub fn default_pack() -> Vec<Source> {
    FILES
        .iter()
        .map(|(name, text)| Source {
            label: PathBuf::from(LABEL).join(name),
            text: (*text).to_owned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A file added to policies/default must be embedded too, or the built-in
    /// pack silently differs from the shipped one.
    #[test]
    fn embeds_every_policy_file_of_the_pack() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/default");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| {
                (n.ends_with(".yaml") || n.ends_with(".yml"))
                    && !warden_policy::is_test_file(std::path::Path::new(n))
            })
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = FILES.iter().map(|(n, _)| (*n).to_owned()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    #[test]
    fn compiles_to_the_same_set_as_the_directory() {
        let builtin = warden_policy::PolicySet::from_sources(&default_pack()).unwrap();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/default");
        let loaded = warden_policy::PolicySet::load(&[dir]).unwrap();
        assert_eq!(builtin.rules().len(), loaded.rules().len());
        assert_eq!(builtin.default_verdict(), loaded.default_verdict());
    }
}
