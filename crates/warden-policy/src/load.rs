//! Loading: files and directories → one compiled [`PolicySet`].
//!
//! Composition: every rule of every file joins one set (ids must be unique
//! across it); the set's default is the most restrictive of the files'
//! defaults (deny > warn > allow); the hash covers every source's bytes in
//! load order. Directories are read recursively in byte order of file name;
//! only `*.yaml`/`*.yml` files count, and `*_test.yaml` files are test
//! suites, not policies.

use crate::compile::{Compiled, compile_agt, compile_policy};
use crate::condition::environment;
use crate::error::{Origin, PolicyError};
use crate::set::PolicySet;
use crate::source::{Document, parse_document, read_source};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Whether `path` is a YAML file by extension.
pub(crate) fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Whether an in-memory source is a file a `rego:` or `cedar:` block refers
/// to (module, data, policies, schema, entities) rather than a policy.
fn is_aux(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("rego" | "json" | "cedar" | "cedarschema")
    )
}

/// Whether `path` names a test suite (`*_test.yaml`).
pub fn is_test_file(path: &Path) -> bool {
    path.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s.ends_with("_test"))
        && is_yaml(path)
}

/// Expands files and directories into YAML files, sorted within each directory.
pub(crate) fn expand(paths: &[PathBuf], want_tests: bool) -> Result<Vec<PathBuf>, PolicyError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|source| PolicyError::Io {
            path: p.clone(),
            source,
        })?;
        if meta.is_dir() {
            walk(p, want_tests, &mut out, 0)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(
    dir: &Path,
    want_tests: bool,
    out: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), PolicyError> {
    if depth > 16 {
        return Err(PolicyError::invalid(
            Origin::new(dir, 0, 0),
            "directory",
            "nested more than 16 levels (symlink loop?)",
        ));
    }
    let io = |source| PolicyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort();
    for e in entries {
        let hidden = e
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if e.is_dir() {
            walk(&e, want_tests, out, depth + 1)?;
        } else if is_yaml(&e) && is_test_file(&e) == want_tests {
            out.push(e);
        }
    }
    Ok(())
}

/// One in-memory source: a label (used as the file name in errors) and its text.
#[derive(Debug, Clone)]
pub struct Source {
    /// Shown as the file in error messages.
    pub label: PathBuf,
    /// The YAML text.
    pub text: String,
}

impl PolicySet {
    /// Loads and compiles policy files and directories. Refuses to produce an
    /// empty set: no paths, or directories without policy files, are errors.
    pub fn load<P: AsRef<Path>>(paths: &[P]) -> Result<PolicySet, PolicyError> {
        let paths: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
        if paths.is_empty() {
            return Err(PolicyError::NoPolicy("no policy path given".to_owned()));
        }
        let files = expand(&paths, false)?;
        let mut sources = Vec::with_capacity(files.len());
        for f in files {
            let text = read_source(&f)?;
            sources.push(Source { label: f, text });
        }
        if sources.is_empty() {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(PolicyError::NoPolicy(format!(
                "no policy files (*.yaml, *.yml) under {}",
                shown.join(", ")
            )));
        }
        PolicySet::from_sources(&sources)
    }

    /// Compiles in-memory sources (for embedding and tests).
    pub fn from_sources(sources: &[Source]) -> Result<PolicySet, PolicyError> {
        if sources.is_empty() {
            return Err(PolicyError::NoPolicy("no policy source given".to_owned()));
        }
        let env = environment().map_err(|m| {
            PolicyError::invalid(Origin::default(), "cel", format!("CEL environment: {m}"))
        })?;
        let mut hasher = Sha256::new();
        let mut rules = Vec::new();
        let mut quotas = Vec::new();
        let mut names = Vec::new();
        let mut default: Option<(warden_core::Verdict, Origin)> = None;
        let mut external = Vec::new();
        let mut rings = Vec::new();
        // `*.rego`, `*.json`, `*.cedar` and `*.cedarschema` sources are files a
        // `rego:` or `cedar:` block refers to, not policies.
        let (aux, sources): (Vec<&Source>, Vec<&Source>) =
            sources.iter().partition(|s| is_aux(&s.label));
        if sources.is_empty() {
            return Err(PolicyError::NoPolicy("no policy source given".to_owned()));
        }
        for s in sources {
            hasher.update((s.text.len() as u64).to_be_bytes());
            hasher.update(s.text.as_bytes());
            let mut extra: Vec<String> = Vec::new();
            let mut resolve = |origin: &Origin, field: &str, rel: &str| {
                let path = crate::engines::beside(origin, rel);
                let text = match aux.iter().find(|a| a.label == path) {
                    Some(a) => a.text.clone(),
                    None => read_source(&path).map_err(|e| match e {
                        PolicyError::Io { source, .. } => PolicyError::invalid(
                            Origin::new(&path, 0, 0),
                            field,
                            format!("cannot read `{rel}` (named at {origin}): {source}"),
                        ),
                        other => other,
                    })?,
                };
                extra.push(text.clone());
                Ok(text)
            };
            let compiled: Compiled = match parse_document(&s.label, &s.text)? {
                Document::Policy(doc) => compile_policy(&env, &s.label, *doc, &mut resolve)?,
                Document::Agt(doc) => compile_agt(&env, &s.label, *doc)?,
                Document::Test(_) => {
                    return Err(PolicyError::invalid(
                        Origin::new(&s.label, 1, 1),
                        "kind",
                        "this is a PolicyTest file; run it with `warden policy test` (name test files `*_test.yaml`)",
                    ));
                }
            };
            for t in &extra {
                hasher.update((t.len() as u64).to_be_bytes());
                hasher.update(t.as_bytes());
            }
            external.extend(compiled.sources);
            rings.extend(compiled.rings);
            names.push(compiled.name);
            rules.extend(compiled.rules);
            quotas.extend(compiled.quotas);
            if let Some((v, o)) = compiled.default
                && default.as_ref().is_none_or(|(d, _)| v > *d)
            {
                default = Some((v, o));
            }
        }
        let (default, default_origin) =
            default.ok_or_else(|| PolicyError::NoPolicy("no default verdict".to_owned()))?;
        let hash = format!("sha256:{}", hex::encode(hasher.finalize()));
        PolicySet::build(rules, quotas, default, default_origin, hash, names, env)
            .and_then(|set| set.with_sources(external))
            .and_then(|set| set.with_rings(rings))
    }

    /// Compiles a single YAML text (label `<inline>`).
    pub fn from_yaml(text: &str) -> Result<PolicySet, PolicyError> {
        PolicySet::from_sources(&[Source {
            label: PathBuf::from("<inline>"),
            text: text.to_owned(),
        }])
    }
}
