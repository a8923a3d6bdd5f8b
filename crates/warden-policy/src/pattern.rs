//! Name matchers for `tools:` and `agents:` lists: exact names and globs, compiled once.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Whether a pattern uses glob syntax (anything else is an exact name).
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// Compiles one glob; `*` also matches `.` and `/` (tool names are not paths).
pub(crate) fn compile_glob(pattern: &str) -> Result<Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(false)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob `{pattern}`: {}", e.kind()))
}

/// A compiled list of exact names and globs. An empty list is never built:
/// "no list" means "any" and is represented by `None` at the call site.
#[derive(Debug, Clone)]
pub(crate) struct NameSet {
    exact: Box<[Box<str>]>,
    globs: Option<GlobSet>,
    /// The patterns as written, for lint and explain.
    pub(crate) written: Box<[String]>,
}

impl NameSet {
    /// Compiles `patterns`; errors carry the index of the bad pattern.
    pub(crate) fn compile(patterns: &[String]) -> Result<Self, (usize, String)> {
        let mut exact = Vec::new();
        let mut builder = GlobSetBuilder::new();
        let mut any_glob = false;
        for (i, p) in patterns.iter().enumerate() {
            if p.is_empty() {
                return Err((i, "empty name".to_owned()));
            }
            if is_glob(p) {
                builder.add(compile_glob(p).map_err(|e| (i, e))?);
                any_glob = true;
            } else {
                exact.push(p.as_str().into());
            }
        }
        let globs = if any_glob {
            Some(builder.build().map_err(|e| (0, e.to_string()))?)
        } else {
            None
        };
        Ok(NameSet {
            exact: exact.into_boxed_slice(),
            globs,
            written: patterns.to_vec().into_boxed_slice(),
        })
    }

    /// Whether `name` is in the set.
    pub(crate) fn matches(&self, name: &str) -> bool {
        self.exact.iter().any(|e| &**e == name)
            || self.globs.as_ref().is_some_and(|g| g.is_match(name))
    }

    /// Whether every name this set matches is also matched by `other`
    /// (conservative: only exact-name and identical-pattern containment).
    pub(crate) fn is_subset_of(&self, other: &NameSet) -> bool {
        self.written
            .iter()
            .all(|p| other.written.iter().any(|q| q == p) || (!is_glob(p) && other.matches(p)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(p: &[&str]) -> NameSet {
        NameSet::compile(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn exact_and_glob() {
        let s = set(&["send_email", "db.*", "shell_?"]);
        assert!(s.matches("send_email"));
        assert!(s.matches("db.query"));
        assert!(s.matches("db.a.b"));
        assert!(s.matches("shell_x"));
        assert!(!s.matches("shell_xy"));
        assert!(!s.matches("send_emails"));
        assert!(!s.matches("DB.query"));
    }

    #[test]
    fn bad_glob_names_index() {
        let e = NameSet::compile(&["ok".into(), "bad[".into()]).unwrap_err();
        assert_eq!(e.0, 1);
        assert!(NameSet::compile(&["".into()]).is_err());
    }

    #[test]
    fn unicode_lookalikes_do_not_match() {
        // Cyrillic 'е' in "sеnd_email" must not match the Latin rule.
        let s = set(&["send_email"]);
        assert!(!s.matches("s\u{435}nd_email"));
    }

    #[test]
    fn subset() {
        assert!(set(&["db.query"]).is_subset_of(&set(&["db.*"])));
        assert!(set(&["db.*"]).is_subset_of(&set(&["db.*", "x"])));
        assert!(!set(&["db.*"]).is_subset_of(&set(&["db.query"])));
    }
}
