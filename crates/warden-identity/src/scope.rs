//! What a delegation grants, and the subset relation that makes delegation
//! chains only ever narrow.

use serde::{Deserialize, Serialize};
use std::fmt;
use warden_core::Point;

use crate::IdentityError;

/// Longest tool glob.
pub const MAX_GLOB_LEN: usize = 256;
/// Most globs in one scope.
pub const MAX_GLOBS: usize = 64;

/// A tool pattern: literal text where `*` matches any sequence (also empty,
/// also across dots). No other metacharacters exist, so whether one glob is
/// within another is decidable exactly; `?`, `[`, `]`, `{`, `}`, `\` and
/// control characters are rejected rather than given a meaning.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Glob(String);

impl fmt::Debug for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Glob({:?})", self.0)
    }
}

impl fmt::Display for Glob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Glob {
    /// Validates a pattern.
    ///
    /// # Errors
    /// [`IdentityError::Malformed`] for empty, too long, or reserved characters.
    pub fn new(pattern: impl Into<String>) -> Result<Self, IdentityError> {
        let pattern = pattern.into();
        if pattern.is_empty() || pattern.len() > MAX_GLOB_LEN {
            return Err(IdentityError::malformed(format!(
                "tool glob must be 1..={MAX_GLOB_LEN} bytes"
            )));
        }
        if let Some(c) = pattern
            .chars()
            .find(|c| matches!(c, '?' | '[' | ']' | '{' | '}' | '\\' | ',') || c.is_control())
        {
            return Err(IdentityError::malformed(format!(
                "tool glob {:?}: character {c:?} is reserved",
                crate::did::truncate(&pattern)
            )));
        }
        Ok(Glob(pattern))
    }

    /// The pattern text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `tool` matches. Byte-exact: no case folding or Unicode
    /// normalisation, so a look-alike name is a different tool.
    #[must_use]
    pub fn matches(&self, tool: &str) -> bool {
        wildcard(self.0.as_bytes(), tool.as_bytes())
    }

    /// Whether every tool `other` matches is matched by `self`.
    ///
    /// Decided by matching `other`'s text, `*` included, against `self`
    /// where a literal `*` in the text can only be absorbed by a `*` of
    /// `self`. Sound: if that succeeds, any expansion of `other`'s stars
    /// stays inside the corresponding star regions of `self`.
    #[must_use]
    pub fn covers(&self, other: &Glob) -> bool {
        // `self` has no literal `*` (every `*` is a wildcard), so its
        // literal bytes can never consume a `*` of `other`.
        wildcard(self.0.as_bytes(), other.0.as_bytes())
    }
}

/// Classic `*` matcher, O(|p|·|t|) worst case, no allocation.
fn wildcard(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

impl Serialize for Glob {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Glob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Glob::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A set of intervention points (a bit per [`Point`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PointSet(u16);

impl PointSet {
    /// Every point.
    pub const ALL: PointSet = PointSet((1 << Point::ALL.len()) - 1);
    /// No point.
    pub const NONE: PointSet = PointSet(0);

    /// The set of these points.
    #[must_use]
    pub fn of(points: &[Point]) -> Self {
        PointSet(points.iter().fold(0, |acc, p| acc | (1 << p.index())))
    }

    /// Membership.
    #[must_use]
    pub fn contains(self, point: Point) -> bool {
        self.0 & (1 << point.index()) != 0
    }

    /// Subset.
    #[must_use]
    pub fn is_subset_of(self, other: PointSet) -> bool {
        self.0 & !other.0 == 0
    }

    fn points(self) -> impl Iterator<Item = Point> {
        Point::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl fmt::Debug for PointSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.points().map(Point::as_str))
            .finish()
    }
}

impl Serialize for PointSet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.points())
    }
}

impl<'de> Deserialize<'de> for PointSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let points = Vec::<Point>::deserialize(d)?;
        Ok(PointSet::of(&points))
    }
}

/// What a holder may do: which tools, at which intervention points, how
/// many calls. The wire form is the `cap` claim of a delegation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scope {
    /// Tool globs; an action naming a tool must match one.
    pub tools: Vec<Glob>,
    /// Intervention points at which the holder may act.
    pub points: PointSet,
    /// Most calls admitted under this grant (counted by the verifier), or
    /// unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<u64>,
}

impl Scope {
    /// Every tool at every point, unlimited: a trust anchor's usual scope.
    #[must_use]
    pub fn everything() -> Self {
        Scope {
            tools: vec![Glob("*".into())],
            points: PointSet::ALL,
            budget: None,
        }
    }

    /// These tool globs at every point, unlimited.
    ///
    /// # Errors
    /// An invalid glob.
    pub fn tools<S: AsRef<str>>(globs: &[S]) -> Result<Self, IdentityError> {
        let scope = Scope {
            tools: globs
                .iter()
                .map(|g| Glob::new(g.as_ref()))
                .collect::<Result<_, _>>()?,
            points: PointSet::ALL,
            budget: None,
        };
        scope.validate()?;
        Ok(scope)
    }

    /// Structural limits.
    ///
    /// # Errors
    /// [`IdentityError::Malformed`] when there are too many globs.
    pub fn validate(&self) -> Result<(), IdentityError> {
        if self.tools.len() > MAX_GLOBS {
            return Err(IdentityError::malformed(format!(
                "more than {MAX_GLOBS} tool globs"
            )));
        }
        Ok(())
    }

    /// Whether an action at `point` on `tool` is inside the scope. An action
    /// without a tool needs only its point.
    #[must_use]
    pub fn permits(&self, point: Point, tool: Option<&str>) -> bool {
        self.points.contains(point) && tool.is_none_or(|t| self.tools.iter().any(|g| g.matches(t)))
    }

    /// Why `self` is not within `parent`, or `Ok` if it is: every glob is
    /// covered by one parent glob, points are a subset, and the budget is no
    /// larger (unlimited only under unlimited).
    ///
    /// # Errors
    /// [`IdentityError::Scope`] naming the first widening.
    pub fn check_within(&self, parent: &Scope) -> Result<(), IdentityError> {
        self.validate()?;
        if let Some(g) = self
            .tools
            .iter()
            .find(|g| !parent.tools.iter().any(|p| p.covers(g)))
        {
            return Err(IdentityError::Scope(format!(
                "tool glob {:?} is not within the parent's {:?}",
                g.as_str(),
                parent.tools.iter().map(Glob::as_str).collect::<Vec<_>>()
            )));
        }
        if !self.points.is_subset_of(parent.points) {
            return Err(IdentityError::Scope(format!(
                "points {:?} are not within the parent's {:?}",
                self.points, parent.points
            )));
        }
        match (self.budget, parent.budget) {
            (_, None) => {}
            (Some(c), Some(p)) if c <= p => {}
            (c, Some(p)) => {
                return Err(IdentityError::Scope(format!(
                    "budget {} exceeds the parent's {p}",
                    c.map_or_else(|| "unlimited".to_owned(), |c| c.to_string())
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn g(s: &str) -> Glob {
        Glob::new(s).unwrap()
    }

    #[test]
    fn matching() {
        assert!(g("fs.*").matches("fs.read"));
        assert!(g("fs.*").matches("fs."));
        assert!(!g("fs.*").matches("fsx.read"));
        assert!(g("*").matches(""));
        assert!(g("a*b*c").matches("aXbYc"));
        assert!(!g("a*b*c").matches("aXbY"));
        assert!(g("*.read").matches("fs.db.read"));
        // Look-alike Cyrillic `а` is another tool.
        assert!(!g("pay").matches("p\u{430}y"));
    }

    #[test]
    fn covering() {
        assert!(g("*").covers(&g("fs.*")));
        assert!(g("fs.*").covers(&g("fs.read")));
        assert!(g("fs.*").covers(&g("fs.r*")));
        assert!(g("fs.*").covers(&g("fs.*")));
        assert!(!g("fs.read").covers(&g("fs.*")));
        assert!(!g("fs.*").covers(&g("f*")));
        assert!(!g("fs.*").covers(&g("*")));
        assert!(!g("a*c").covers(&g("a*")));
        assert!(g("a*c").covers(&g("ab*xc")));
        assert!(!g("*.read").covers(&g("fs.*")));
    }

    #[test]
    fn reserved_characters() {
        for bad in ["", "a?", "[ab]", "{a,b}", "a\\*", "a\nb", "a,b"] {
            assert!(Glob::new(bad).is_err(), "{bad:?}");
        }
        assert!(Glob::new("x".repeat(MAX_GLOB_LEN + 1)).is_err());
    }

    #[test]
    fn points_and_budget() {
        let parent = Scope {
            tools: vec![g("fs.*")],
            points: PointSet::of(&[Point::PreToolCall, Point::PostToolCall]),
            budget: Some(10),
        };
        let mut child = parent.clone();
        child.check_within(&parent).unwrap();
        child.points = PointSet::ALL;
        assert!(matches!(
            child.check_within(&parent),
            Err(IdentityError::Scope(_))
        ));
        child.points = parent.points;
        child.budget = None;
        assert!(child.check_within(&parent).is_err());
        child.budget = Some(11);
        assert!(child.check_within(&parent).is_err());
        child.budget = Some(3);
        child.check_within(&parent).unwrap();
        assert!(child.permits(Point::PreToolCall, Some("fs.read")));
        assert!(!child.permits(Point::Input, None));
        assert!(!child.permits(Point::PreToolCall, Some("net.get")));
    }

    #[test]
    fn wire_form() {
        let s: Scope =
            serde_json::from_str(r#"{"tools":["fs.*"],"points":["pre_tool_call"],"budget":5}"#)
                .unwrap();
        assert_eq!(s.points, PointSet::of(&[Point::PreToolCall]));
        assert!(
            serde_json::from_str::<Scope>(r#"{"tools":["fs.*"],"points":[],"extra":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Scope>(r#"{"tools":["fs.?"],"points":[]}"#).is_err());
        assert!(
            serde_json::from_str::<Scope>(r#"{"tools":["fs.*"],"points":["nowhere"]}"#).is_err()
        );
        let back: Scope = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
