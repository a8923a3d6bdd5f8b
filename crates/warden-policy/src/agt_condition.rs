//! Translation of AGT (`governance.toolkit/v1`) condition strings into CEL.
//!
//! AGT rules carry a condition such as
//! `action.type in ['drop', 'delete'] and user.role != 'admin'`, evaluated
//! over an evaluation-context dictionary. Warden evaluates the same
//! condition over the action's `context` JSON object, so the translator
//! emits CEL that reads `context.<path>`.
//!
//! The reference semantics are those of AGT's Python engine
//! (`agentmesh.governance.policy.PolicyRule._eval_expression`):
//!
//! - a path that does not resolve (missing key, or a non-object on the way)
//!   is `None`: `==` is false, `!=` is true, `in` is false, `not in` is true,
//!   a bare path is false;
//! - a bare path is Python truthiness: `false`, `0`, `0.0`, `""`, `[]`, `{}`,
//!   `null` and missing are false, everything else true;
//! - `<`, `<=`, `>`, `>=` compare `float(value)` with the number, where a
//!   missing or `null` value counts as `0`, a boolean as `0`/`1`, a numeric
//!   string as its number; any other value (list, object, non-numeric
//!   string) makes the comparison false;
//! - `or` binds looser than `and`.
//!
//! The grammar is a strict superset of what the AGT SDKs accept: it adds
//! parentheses, `not`, typed number/boolean/null literals and
//! string literals that may contain `and`/`or`. Anything else is rejected
//! with the byte column and what was expected, never translated into an
//! expression that silently matches. The emitted CEL guards every map
//! access, so evaluation never fails on missing keys or unexpected types:
//! it yields AGT's result instead of a CEL error.

use std::fmt::Write as _;

/// Longest AGT condition accepted, in bytes.
pub(crate) const MAX_AGT_CONDITION_BYTES: usize = 4096;

/// Deepest nesting of parentheses and `not` accepted.
pub(crate) const MAX_AGT_DEPTH: usize = 64;

/// Why an AGT condition could not be translated.
///
/// Every variant carries the 1-based byte column in the condition string
/// (a condition spanning several lines is counted as one line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AgtConditionError {
    /// The condition exceeds [`MAX_AGT_CONDITION_BYTES`].
    #[error("column {column}: condition is {len} bytes; the limit is {MAX_AGT_CONDITION_BYTES}")]
    TooLong {
        /// First byte past the limit.
        column: usize,
        /// Length of the condition in bytes.
        len: usize,
    },
    /// The condition is empty or only whitespace.
    #[error("column {column}: condition is empty")]
    Empty {
        /// Always 1.
        column: usize,
    },
    /// Parentheses and `not` nest deeper than [`MAX_AGT_DEPTH`].
    #[error("column {column}: condition nests deeper than {MAX_AGT_DEPTH} levels")]
    TooDeep {
        /// The `(` or `not` that goes one level too deep.
        column: usize,
    },
    /// A string literal has no closing quote.
    #[error("column {column}: unterminated string literal{hint}")]
    UnterminatedString {
        /// The opening quote.
        column: usize,
        /// Extra advice, possibly empty.
        hint: &'static str,
    },
    /// A character that starts no token.
    #[error("column {column}: unexpected character `{found}`{hint}")]
    UnexpectedChar {
        /// The character.
        column: usize,
        /// What was found.
        found: char,
        /// Extra advice, possibly empty.
        hint: &'static str,
    },
    /// A number that is malformed or out of range.
    #[error("column {column}: malformed number `{text}`")]
    BadNumber {
        /// Start of the number.
        column: usize,
        /// The offending text.
        text: String,
    },
    /// The parser expected something else here.
    #[error("column {column}: expected {expected}, found {found}")]
    Expected {
        /// The token that does not fit (or the end of the input).
        column: usize,
        /// What would have been accepted.
        expected: String,
        /// What is there instead.
        found: String,
    },
    /// The condition is valid but its CEL translation exceeds the CEL size limit.
    #[error(
        "column {column}: condition translates to {bytes} bytes of CEL; the limit is {limit} (split the rule)"
    )]
    TranslationTooLarge {
        /// Always 1: the whole condition is at fault.
        column: usize,
        /// Size of the translation.
        bytes: usize,
        /// The CEL size limit.
        limit: usize,
    },
}

/// Translates one AGT condition string into an equivalent CEL expression over the variable `context`.
pub(crate) fn translate(condition: &str) -> Result<String, AgtConditionError> {
    let expr = parse(condition)?;
    let cel = emit(&expr).text;
    // Checked here so the author sees the AGT-level cause rather than a
    // complaint about CEL source they never wrote.
    let limit = crate::condition::MAX_CONDITION_BYTES;
    if cel.len() > limit {
        return Err(AgtConditionError::TranslationTooLarge {
            column: 1,
            bytes: cel.len(),
            limit,
        });
    }
    Ok(cel)
}

// ---------------------------------------------------------------------------
// Syntax tree
// ---------------------------------------------------------------------------

/// A literal value in a condition.
#[derive(Debug, Clone, PartialEq)]
enum Lit {
    /// A quoted string, or a bare word inside a list.
    Str(String),
    /// An integer literal that fits `i64`.
    Int(i64),
    /// Any other number (fraction, exponent, or an integer beyond `i64`).
    Float(f64),
    /// `true`/`True` or `false`/`False`.
    Bool(bool),
    /// `null`/`None`.
    Null,
}

/// An ordering (relational) operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rel {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

impl Rel {
    /// CEL spelling.
    fn cel(self) -> &'static str {
        match self {
            Rel::Lt => "<",
            Rel::Le => "<=",
            Rel::Gt => ">",
            Rel::Ge => ">=",
        }
    }

    /// The operator with its operands swapped (`5 < x` is `x > 5`).
    fn flipped(self) -> Rel {
        match self {
            Rel::Lt => Rel::Gt,
            Rel::Le => Rel::Ge,
            Rel::Gt => Rel::Lt,
            Rel::Ge => Rel::Le,
        }
    }

    /// Evaluates the operator on two doubles (used to fold the cases where
    /// AGT substitutes a constant for the value).
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Rel::Lt => a < b,
            Rel::Le => a <= b,
            Rel::Gt => a > b,
            Rel::Ge => a >= b,
        }
    }
}

/// A comparison operator as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// An ordering operator.
    Rel(Rel),
}

impl CmpOp {
    /// Spelling, for messages.
    fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Rel(o) => o.cel(),
        }
    }
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// Any of the operands (at least two).
    Or(Vec<Expr>),
    /// All of the operands (at least two).
    And(Vec<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// A bare path: Python truthiness of its value.
    Truthy(Vec<String>),
    /// `path == lit` for any of `lits` (`==` has one literal, `in` several);
    /// `negated` for `!=` and `not in`.
    Equals {
        /// The context path.
        path: Vec<String>,
        /// The literals compared with.
        lits: Vec<Lit>,
        /// Whether the result is inverted.
        negated: bool,
    },
    /// `path <op> number`.
    Order {
        /// The context path.
        path: Vec<String>,
        /// The operator, with the path on its left.
        op: Rel,
        /// The number, as AGT converts it (`float(...)`).
        number: f64,
    },
}

// ---------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------

/// A reserved word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kw {
    /// `and`
    And,
    /// `or`
    Or,
    /// `not`
    Not,
    /// `in`
    In,
}

/// The kinds of token.
#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A dotted path such as `user.role` (segments as written).
    Path(Vec<String>),
    /// A reserved word.
    Kw(Kw),
    /// A literal (string, number, boolean, null).
    Lit(Lit),
    /// A comparison operator.
    Op(CmpOp),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// End of the input.
    End,
}

/// A token and where it starts.
#[derive(Debug, Clone)]
struct Token {
    /// What it is.
    tok: Tok,
    /// 1-based byte column of its first byte.
    column: usize,
}

/// Whether `c` may start a path.
fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_'
}

/// Whether `c` may continue a path segment. Dashes are allowed so keys such
/// as `x-request-id` can be addressed (there is no subtraction to confuse).
fn is_segment_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// Splits `src` into tokens, ending with [`Tok::End`].
fn tokenize(src: &str) -> Result<Vec<Token>, AgtConditionError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < src.len() {
        let Some(c) = src[i..].chars().next() else {
            break;
        };
        let column = i + 1;
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let next = src[i + c.len_utf8()..].chars().next();
        let single = |tok: Tok| Token { tok, column };
        match c {
            '(' => out.push(single(Tok::LParen)),
            ')' => out.push(single(Tok::RParen)),
            '[' => out.push(single(Tok::LBracket)),
            ']' => out.push(single(Tok::RBracket)),
            ',' => out.push(single(Tok::Comma)),
            '=' | '!' | '<' | '>' => {
                let (op, len) = match (c, next) {
                    ('=', Some('=')) => (CmpOp::Eq, 2),
                    ('!', Some('=')) => (CmpOp::Ne, 2),
                    ('<', Some('=')) => (CmpOp::Rel(Rel::Le), 2),
                    ('>', Some('=')) => (CmpOp::Rel(Rel::Ge), 2),
                    ('<', _) => (CmpOp::Rel(Rel::Lt), 1),
                    ('>', _) => (CmpOp::Rel(Rel::Gt), 1),
                    _ => {
                        let hint = if c == '=' {
                            " (use `==`)"
                        } else {
                            " (use `not`)"
                        };
                        return Err(AgtConditionError::UnexpectedChar {
                            column,
                            found: c,
                            hint,
                        });
                    }
                };
                out.push(single(Tok::Op(op)));
                i += len;
                continue;
            }
            '\'' | '"' => {
                let body = &src[i + 1..];
                let Some(end) = body.find(c) else {
                    // AGT strings have no escapes; a backslash suggests the
                    // author expected one.
                    let hint = if src.contains("\\'") || src.contains("\\\"") {
                        " (AGT strings have no escape sequences: quote with the other kind of quote instead)"
                    } else {
                        ""
                    };
                    return Err(AgtConditionError::UnterminatedString { column, hint });
                };
                out.push(single(Tok::Lit(Lit::Str(body[..end].to_owned()))));
                i += 1 + end + 1;
                continue;
            }
            _ if c.is_ascii_digit() || (c == '-' && next.is_some_and(|n| n.is_ascii_digit())) => {
                let (lit, len) = lex_number(src, i)?;
                out.push(single(Tok::Lit(lit)));
                i += len;
                continue;
            }
            _ if is_ident_start(c) => {
                let (segments, len) = lex_path(src, i)?;
                let tok = if segments.len() == 1 {
                    match segments[0].as_str() {
                        "and" => Tok::Kw(Kw::And),
                        "or" => Tok::Kw(Kw::Or),
                        "not" => Tok::Kw(Kw::Not),
                        "in" => Tok::Kw(Kw::In),
                        "true" | "True" => Tok::Lit(Lit::Bool(true)),
                        "false" | "False" => Tok::Lit(Lit::Bool(false)),
                        "null" | "None" => Tok::Lit(Lit::Null),
                        _ => Tok::Path(segments),
                    }
                } else {
                    Tok::Path(segments)
                };
                out.push(single(tok));
                i += len;
                continue;
            }
            _ => {
                let hint = match (c, next) {
                    ('&', _) => " (use `and`)",
                    ('|', _) => " (use `or`)",
                    _ => "",
                };
                return Err(AgtConditionError::UnexpectedChar {
                    column,
                    found: c,
                    hint,
                });
            }
        }
        // Single-byte punctuation.
        i += 1;
    }
    out.push(Token {
        tok: Tok::End,
        column: src.len() + 1,
    });
    Ok(out)
}

/// Lexes a number at byte `start`: `-?digits(.digits)?([eE][+-]?digits)?`.
/// Returns the literal and its length in bytes.
fn lex_number(src: &str, start: usize) -> Result<(Lit, usize), AgtConditionError> {
    let b = src.as_bytes();
    let digits = |mut j: usize| {
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        j
    };
    let mut j = start;
    if b[j] == b'-' {
        j += 1;
    }
    j = digits(j);
    let mut integral = true;
    let mut malformed = false;
    if j < b.len() && b[j] == b'.' {
        integral = false;
        let k = digits(j + 1);
        malformed |= k == j + 1;
        j = k;
    }
    if j < b.len() && (b[j] == b'e' || b[j] == b'E') {
        integral = false;
        let mut k = j + 1;
        if k < b.len() && (b[k] == b'+' || b[k] == b'-') {
            k += 1;
        }
        let e = digits(k);
        malformed |= e == k;
        j = e;
    }
    // A number glued to letters (`5abc`, `1.2.3`) is not a number.
    let mut end = j;
    while let Some(c) = src[end..].chars().next() {
        if is_segment_char(c) || c == '.' {
            malformed = true;
            end += c.len_utf8();
        } else {
            break;
        }
    }
    let text = &src[start..end];
    let bad = || AgtConditionError::BadNumber {
        column: start + 1,
        text: text.to_owned(),
    };
    if malformed {
        return Err(bad());
    }
    if integral && let Ok(n) = text.parse::<i64>() {
        return Ok((Lit::Int(n), end - start));
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => Ok((Lit::Float(f), end - start)),
        _ => Err(bad()),
    }
}

/// Lexes a dotted path at byte `start` (which holds an identifier start).
/// Segments after a dot may start with a digit (`items.0` reads key `"0"`,
/// as AGT does). Whitespace is not allowed around the dots.
fn lex_path(src: &str, start: usize) -> Result<(Vec<String>, usize), AgtConditionError> {
    let mut segments = Vec::new();
    let mut j = start;
    loop {
        let seg_start = j;
        while let Some(c) = src[j..].chars().next() {
            if is_segment_char(c) {
                j += c.len_utf8();
            } else {
                break;
            }
        }
        if j == seg_start {
            return Err(AgtConditionError::Expected {
                column: j + 1,
                expected: "a key name after `.`".to_owned(),
                found: describe_char(src[j..].chars().next()),
            });
        }
        segments.push(src[seg_start..j].to_owned());
        if src[j..].starts_with('.') {
            j += 1;
        } else {
            return Ok((segments, j - start));
        }
    }
}

/// Describes a raw character for an error message.
fn describe_char(c: Option<char>) -> String {
    match c {
        None => "end of input".to_owned(),
        Some(c) if c.is_whitespace() => "whitespace".to_owned(),
        Some(c) => format!("`{c}`"),
    }
}

/// Describes a token for an error message.
fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Path(p) => {
            let text = p.join(".");
            if matches!(
                text.as_str(),
                "AND" | "OR" | "NOT" | "IN" | "And" | "Or" | "Not" | "In"
            ) {
                format!(
                    "`{text}` (keywords are lowercase: `{}`)",
                    text.to_lowercase()
                )
            } else {
                format!("`{text}`")
            }
        }
        Tok::Kw(k) => format!(
            "`{}`",
            match k {
                Kw::And => "and",
                Kw::Or => "or",
                Kw::Not => "not",
                Kw::In => "in",
            }
        ),
        Tok::Lit(Lit::Str(s)) => {
            let short: String = s.chars().take(24).collect();
            let ellipsis = if short.len() < s.len() { "…" } else { "" };
            format!("string '{short}{ellipsis}'")
        }
        Tok::Lit(Lit::Int(n)) => format!("number `{n}`"),
        Tok::Lit(Lit::Float(f)) => format!("number `{f}`"),
        Tok::Lit(Lit::Bool(b)) => format!("`{b}`"),
        Tok::Lit(Lit::Null) => "`null`".to_owned(),
        Tok::Op(op) => format!("`{}`", op.as_str()),
        Tok::LParen => "`(`".to_owned(),
        Tok::RParen => "`)`".to_owned(),
        Tok::LBracket => "`[`".to_owned(),
        Tok::RBracket => "`]`".to_owned(),
        Tok::Comma => "`,`".to_owned(),
        Tok::End => "end of input".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------

/// Parses a whole condition.
fn parse(src: &str) -> Result<Expr, AgtConditionError> {
    if src.len() > MAX_AGT_CONDITION_BYTES {
        return Err(AgtConditionError::TooLong {
            column: MAX_AGT_CONDITION_BYTES + 1,
            len: src.len(),
        });
    }
    if src.trim().is_empty() {
        return Err(AgtConditionError::Empty { column: 1 });
    }
    let mut p = Parser {
        tokens: tokenize(src)?,
        pos: 0,
        depth: 0,
    };
    let expr = p.or_expr()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let expected = if t.tok == Tok::RParen {
            "`and`, `or` or the end of the condition (this `)` closes nothing)"
        } else {
            "`and`, `or` or the end of the condition"
        };
        return Err(p.expected(expected));
    }
    Ok(expr)
}

/// Recursive-descent parser state.
///
/// ```text
/// or_expr  := and_expr ("or" and_expr)*
/// and_expr := not_expr ("and" not_expr)*
/// not_expr := "not" not_expr | atom
/// atom     := "(" or_expr ")"
///           | path [ op literal | "in" list | "not" "in" list ]
///           | literal op path
/// list     := "[" item ("," item)* [","] "]"      item := literal | bare word
/// ```
struct Parser {
    /// All tokens, ending with [`Tok::End`].
    tokens: Vec<Token>,
    /// Index of the next token.
    pos: usize,
    /// Current nesting of `(` and `not`.
    depth: usize,
}

impl Parser {
    /// The next token (the final `End` repeats forever).
    fn peek(&self) -> &Token {
        let last = self.tokens.len().saturating_sub(1);
        &self.tokens[self.pos.min(last)]
    }

    /// Consumes and returns the next token.
    fn bump(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        t
    }

    /// An "expected X, found <next token>" error at the next token.
    fn expected(&self, what: impl Into<String>) -> AgtConditionError {
        let t = self.peek();
        AgtConditionError::Expected {
            column: t.column,
            expected: what.into(),
            found: describe(&t.tok),
        }
    }

    /// Enters one nesting level at `column`, refusing to go past the limit
    /// (the parser recurses per level, so this also bounds its stack).
    fn enter(&mut self, column: usize) -> Result<(), AgtConditionError> {
        self.depth += 1;
        if self.depth > MAX_AGT_DEPTH {
            return Err(AgtConditionError::TooDeep { column });
        }
        Ok(())
    }

    /// `or_expr`.
    fn or_expr(&mut self) -> Result<Expr, AgtConditionError> {
        let mut items = vec![self.and_expr()?];
        while self.peek().tok == Tok::Kw(Kw::Or) {
            self.bump();
            items.push(self.and_expr()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::Or(items)
        })
    }

    /// `and_expr`.
    fn and_expr(&mut self) -> Result<Expr, AgtConditionError> {
        let mut items = vec![self.not_expr()?];
        while self.peek().tok == Tok::Kw(Kw::And) {
            self.bump();
            items.push(self.not_expr()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Expr::And(items)
        })
    }

    /// `not_expr`.
    fn not_expr(&mut self) -> Result<Expr, AgtConditionError> {
        if self.peek().tok == Tok::Kw(Kw::Not) {
            let t = self.bump();
            self.enter(t.column)?;
            let inner = self.not_expr()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.atom()
    }

    /// `atom`.
    fn atom(&mut self) -> Result<Expr, AgtConditionError> {
        let t = self.peek().clone();
        match t.tok.clone() {
            Tok::LParen => {
                self.bump();
                self.enter(t.column)?;
                let inner = self.or_expr()?;
                if self.peek().tok != Tok::RParen {
                    return Err(self.expected(format!(
                        "`and`, `or` or `)` to close the `(` at column {}",
                        t.column
                    )));
                }
                self.bump();
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Path(path) => {
                self.bump();
                self.after_path(path)
            }
            Tok::Lit(lit) => {
                self.bump();
                let Tok::Op(op) = self.peek().tok else {
                    return Err(self.expected(format!(
                        "a comparison operator after {} (a literal is not a condition by itself)",
                        describe(&Tok::Lit(lit))
                    )));
                };
                self.bump();
                let Tok::Path(path) = self.peek().tok.clone() else {
                    return Err(self.expected(format!(
                        "a context path after `{}` (one side of a comparison must be a path)",
                        op.as_str()
                    )));
                };
                self.bump();
                let expr =
                    comparison(path, op, lit).map_err(|expected| AgtConditionError::Expected {
                        column: t.column,
                        expected,
                        found: describe(&t.tok),
                    })?;
                // `5 < x` is `x > 5`; equality is symmetric.
                Ok(match expr {
                    Expr::Order { path, op, number } => Expr::Order {
                        path,
                        op: op.flipped(),
                        number,
                    },
                    other => other,
                })
            }
            _ => Err(self.expected("a condition (a context path, a comparison, `not` or `(`)")),
        }
    }

    /// What may follow a path: a comparison, `in`, `not in`, or nothing
    /// (truthiness).
    fn after_path(&mut self, path: Vec<String>) -> Result<Expr, AgtConditionError> {
        match self.peek().tok.clone() {
            Tok::Op(op) => {
                self.bump();
                let t = self.peek().clone();
                match t.tok.clone() {
                    Tok::Lit(lit) => {
                        self.bump();
                        comparison(path, op, lit).map_err(|expected| AgtConditionError::Expected {
                            column: t.column,
                            expected,
                            found: describe(&t.tok),
                        })
                    }
                    Tok::Path(_) => Err(self.expected(format!(
                        "a value after `{}` (comparing two context paths is not supported; quote a string: 'text')",
                        op.as_str()
                    ))),
                    _ => Err(self.expected(format!("a value after `{}`", op.as_str()))),
                }
            }
            Tok::Kw(Kw::In) => {
                self.bump();
                let lits = self.list()?;
                Ok(Expr::Equals {
                    path,
                    lits,
                    negated: false,
                })
            }
            Tok::Kw(Kw::Not) => {
                self.bump();
                if self.peek().tok != Tok::Kw(Kw::In) {
                    return Err(self.expected("`in` after `not`"));
                }
                self.bump();
                let lits = self.list()?;
                Ok(Expr::Equals {
                    path,
                    lits,
                    negated: true,
                })
            }
            _ => Ok(Expr::Truthy(path)),
        }
    }

    /// `list`: literals, or bare words taken as strings (as every AGT SDK
    /// does). Empty lists are refused: they can only be a mistake.
    fn list(&mut self) -> Result<Vec<Lit>, AgtConditionError> {
        if self.peek().tok != Tok::LBracket {
            return Err(self.expected("a list `[...]` after `in`"));
        }
        self.bump();
        let mut items = Vec::new();
        loop {
            let t = self.peek().clone();
            match t.tok {
                Tok::RBracket if !items.is_empty() => {
                    self.bump();
                    return Ok(items);
                }
                Tok::Lit(lit) => {
                    self.bump();
                    items.push(lit);
                }
                Tok::Path(p) => {
                    self.bump();
                    items.push(Lit::Str(p.join(".")));
                }
                _ => {
                    return Err(
                        self.expected("a list item (a string, number, `true`, `false` or `null`)")
                    );
                }
            }
            match self.peek().tok {
                Tok::Comma => {
                    self.bump();
                }
                Tok::RBracket => {}
                _ => return Err(self.expected("`,` or `]`")),
            }
        }
    }
}

/// Builds a comparison of `path` with `lit`, or says what literal was
/// needed instead.
fn comparison(path: Vec<String>, op: CmpOp, lit: Lit) -> Result<Expr, String> {
    match op {
        CmpOp::Eq | CmpOp::Ne => Ok(Expr::Equals {
            path,
            lits: vec![lit],
            negated: op == CmpOp::Ne,
        }),
        CmpOp::Rel(o) => {
            let number = match lit {
                Lit::Int(n) => n as f64,
                Lit::Float(f) => f,
                _ => {
                    return Err(format!(
                        "a number with `{}` (ordering compares numbers only)",
                        o.cel()
                    ));
                }
            };
            Ok(Expr::Order {
                path,
                op: o,
                number,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// CEL emission
// ---------------------------------------------------------------------------

/// CEL operator precedence of an emitted fragment, loosest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd)]
enum Prec {
    /// `a ? b : c`
    Ternary,
    /// `a || b`
    Or,
    /// `a && b`
    And,
    /// `!a`, comparisons and tighter.
    Unary,
}

/// Emitted CEL with the precedence of its outermost operator.
struct Frag {
    /// CEL source.
    text: String,
    /// Outermost operator.
    prec: Prec,
}

impl Frag {
    /// The text, parenthesised if its operator binds looser than `need`.
    /// Parentheses are added only where needed so deep AGT nesting maps to
    /// equally deep CEL nesting (the CEL loader bounds nesting too).
    fn at(&self, need: Prec) -> String {
        if self.prec < need {
            format!("({})", self.text)
        } else {
            self.text.clone()
        }
    }
}

/// Emits CEL for `e`.
fn emit(e: &Expr) -> Frag {
    match e {
        Expr::Or(items) => Frag {
            text: items
                .iter()
                .map(|i| emit(i).at(Prec::Or))
                .collect::<Vec<_>>()
                .join(" || "),
            prec: Prec::Or,
        },
        Expr::And(items) => Frag {
            text: items
                .iter()
                .map(|i| emit(i).at(Prec::And))
                .collect::<Vec<_>>()
                .join(" && "),
            prec: Prec::And,
        },
        Expr::Not(inner) => Frag {
            text: format!("!{}", emit(inner).at(Prec::Unary)),
            prec: Prec::Unary,
        },
        Expr::Truthy(path) => emit_truthy(path),
        Expr::Equals {
            path,
            lits,
            negated,
        } => {
            let f = emit_equals(path, lits);
            if *negated {
                Frag {
                    text: format!("!{}", f.at(Prec::Unary)),
                    prec: Prec::Unary,
                }
            } else {
                f
            }
        }
        Expr::Order { path, op, number } => emit_order(path, *op, *number),
    }
}

/// CEL keywords that cannot be used after `.`.
const CEL_RESERVED: [&str; 21] = [
    "true",
    "false",
    "null",
    "in",
    "as",
    "break",
    "const",
    "continue",
    "else",
    "for",
    "function",
    "if",
    "import",
    "let",
    "loop",
    "package",
    "namespace",
    "return",
    "var",
    "void",
    "while",
];

/// Whether `s` can follow a `.` in CEL.
fn is_cel_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !CEL_RESERVED.contains(&s)
}

/// A CEL double-quoted string literal for `s`.
///
/// Brackets are written as `\u` escapes: the CEL loader bounds nesting by
/// counting brackets without regard to quotes, and a string full of `(`
/// must not look like deep nesting.
fn cel_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '(' | ')' | '[' | ']' | '{' | '}' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A CEL string literal for a constant of this module, left readable (its brackets nest only a
/// few levels, which the CEL loader's bracket count tolerates).
fn cel_string_const(s: &str) -> String {
    if s.contains(['"', '\\']) || s.chars().any(char::is_control) {
        cel_string(s)
    } else {
        format!("\"{s}\"")
    }
}

/// `context` followed by the selections for `segments`.
fn accessor(segments: &[String]) -> String {
    let mut out = String::from("context");
    for s in segments {
        if is_cel_ident(s) {
            out.push('.');
            out.push_str(s);
        } else {
            out.push('[');
            out.push_str(&cel_string(s));
            out.push(']');
        }
    }
    out
}

/// A CEL `&&` chain that is true exactly when `segments` resolves the way
/// AGT resolves a path: each step needs an object holding the key. (`in` on
/// a map tests key presence and works for every key spelling, unlike `has`.)
fn presence(segments: &[String]) -> String {
    let mut parts = Vec::with_capacity(segments.len() * 2);
    for (i, seg) in segments.iter().enumerate() {
        let parent = accessor(&segments[..i]);
        // `context` itself is always an object.
        if i > 0 {
            parts.push(is(&parent, Ty::Map));
        }
        parts.push(format!("{} in {parent}", cel_string(seg)));
    }
    parts.join(" && ")
}

/// A CEL type, tested as `type(v) == type(<literal>)`.
///
/// Types are not named (`int`, `map`, ...): Warden's CEL loader accepts no
/// identifier other than its variables, and a literal's type is the same.
#[derive(Debug, Clone, Copy)]
enum Ty {
    /// `int`
    Int,
    /// `uint`
    Uint,
    /// `double`
    Double,
    /// `string`
    Str,
    /// `bool`
    Bool,
    /// `list`
    List,
    /// `map`
    Map,
    /// `null_type`
    Null,
}

/// CEL test that `v` has type `t`.
fn is(v: &str, t: Ty) -> String {
    let sample = match t {
        Ty::Int => "0",
        Ty::Uint => "0u",
        Ty::Double => "0.0",
        Ty::Str => "\"\"",
        Ty::Bool => "true",
        Ty::List => "[]",
        Ty::Map => "{}",
        Ty::Null => "null",
    };
    format!("type({v}) == type({sample})")
}

/// CEL test that `v` is a JSON number (booleans are not numbers here).
fn is_number(v: &str) -> String {
    format!(
        "({} || {} || {})",
        is(v, Ty::Int),
        is(v, Ty::Uint),
        is(v, Ty::Double)
    )
}

/// A CEL double literal for a finite `f` (always with `.` or an exponent).
fn cel_double(f: f64) -> String {
    let s = format!("{f:?}");
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

/// Python truthiness of the value at `path`; missing is false.
fn emit_truthy(path: &[String]) -> Frag {
    let v = accessor(path);
    Frag {
        text: format!(
            "{} && ({} ? {v} : {} || {} || {} ? size({v}) > 0 : {} && {v} != 0)",
            presence(path),
            is(&v, Ty::Bool),
            is(&v, Ty::Str),
            is(&v, Ty::List),
            is(&v, Ty::Map),
            is_number(&v),
        ),
        prec: Prec::And,
    }
}

/// `path == any of lits`, typed: strings match strings, numbers match
/// numbers of any JSON representation, booleans booleans, and `null`
/// matches a `null` or missing value (AGT reads both as `None`).
fn emit_equals(path: &[String], lits: &[Lit]) -> Frag {
    let v = accessor(path);
    let mut strs = Vec::new();
    let mut nums = Vec::new();
    let (mut t, mut f, mut null) = (false, false, false);
    for lit in lits {
        match lit {
            Lit::Str(s) => strs.push(cel_string(s)),
            Lit::Int(n) => nums.push(n.to_string()),
            Lit::Float(x) => nums.push(cel_double(*x)),
            Lit::Bool(true) => t = true,
            Lit::Bool(false) => f = true,
            Lit::Null => null = true,
        }
    }
    strs.dedup();
    nums.dedup();
    let one_of = |items: &[String]| {
        if items.len() == 1 {
            format!("{v} == {}", items[0])
        } else {
            format!("{v} in [{}]", items.join(", "))
        }
    };
    let mut tests = Vec::new();
    if !strs.is_empty() {
        tests.push(format!("{} && {}", is(&v, Ty::Str), one_of(&strs)));
    }
    if !nums.is_empty() {
        tests.push(format!("{} && {}", is_number(&v), one_of(&nums)));
    }
    match (t, f) {
        (true, true) => tests.push(is(&v, Ty::Bool)),
        (true, false) => tests.push(format!("{} && {v}", is(&v, Ty::Bool))),
        (false, true) => tests.push(format!("{} && !{v}", is(&v, Ty::Bool))),
        (false, false) => {}
    }
    if null {
        tests.push(is(&v, Ty::Null));
    }
    let guard = presence(path);
    let any = tests.join(" || ");
    if null {
        // Missing reads as `None`, which equals `null`.
        Frag {
            text: format!("!({guard}) ? true : {any}"),
            prec: Prec::Ternary,
        }
    } else if tests.len() == 1 {
        Frag {
            text: format!("{guard} && {any}"),
            prec: Prec::And,
        }
    } else {
        Frag {
            text: format!("{guard} && ({any})"),
            prec: Prec::And,
        }
    }
}

/// A regex for the strings `double()` parses and AGT's `float()` accepts
/// alike. `nan` is left out on purpose: AGT compares NaN as false, while
/// CEL raises an error comparing it.
const NUMERIC_STRING: &str =
    "^[+-]?(([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?|(?i:inf|infinity))$";

/// `float(value) <op> number` with AGT's conversions: missing and `null` are
/// 0, booleans 0/1, numeric strings their number, anything else false.
fn emit_order(path: &[String], op: Rel, number: f64) -> Frag {
    let v = accessor(path);
    let n = cel_double(number);
    let o = op.cel();
    // Outcomes that do not depend on the value are folded here.
    let when_zero = op.holds(0.0, number);
    let when_one = op.holds(1.0, number);
    let boolean = match (when_one, when_zero) {
        (true, true) => "true".to_owned(),
        (false, false) => "false".to_owned(),
        (true, false) => v.clone(),
        (false, true) => format!("!{v}"),
    };
    let null = if when_zero {
        is(&v, Ty::Null)
    } else {
        "false".to_owned()
    };
    Frag {
        text: format!(
            "!({guard}) ? {when_zero} : {num} ? double({v}) {o} {n} : {string} ? {v}.matches({re}) && double({v}) {o} {n} : {rest}",
            guard = presence(path),
            num = is_number(&v),
            string = is(&v, Ty::Str),
            rest = if boolean == "false" && null == "false" {
                // Booleans and null both give false: no need to tell them apart.
                "false".to_owned()
            } else {
                format!("{} ? {boolean} : {null}", is(&v, Ty::Bool))
            },
            re = cel_string_const(NUMERIC_STRING),
        ),
        prec: Prec::Ternary,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::{Value, json};

    /// Translates and runs `condition` over `ctx` with the standard CEL
    /// environment, as Warden would (values converted by `cel::to_value`).
    fn run(condition: &str, ctx: &Value) -> Result<bool, String> {
        let cel = translate(condition).map_err(|e| e.to_string())?;
        let program = cel::Program::compile(&cel).map_err(|e| format!("{cel}\n{e}"))?;
        let mut context = cel::Context::default();
        context.add_variable_from_value("context", cel::to_value(ctx).unwrap());
        match program.execute(&context) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            other => Err(format!("{cel} gave {other:?}")),
        }
    }

    /// Asserts `condition` over `ctx` gives `expected`.
    #[track_caller]
    fn check(condition: &str, ctx: Value, expected: bool) {
        assert_eq!(run(condition, &ctx), Ok(expected), "{condition} over {ctx}");
    }

    /// The error message for `condition`.
    fn err(condition: &str) -> String {
        translate(condition).unwrap_err().to_string()
    }

    #[test]
    fn equality_and_inequality() {
        let c = json!({"action": {"type": "drop"}, "tool_name": "search"});
        check("action.type == 'drop'", c.clone(), true);
        check("action.type == \"drop\"", c.clone(), true);
        check("action.type == 'delete'", c.clone(), false);
        check("action.type != 'delete'", c.clone(), true);
        check("action.type != 'drop'", c.clone(), false);
        check("'search' == tool_name", c.clone(), true);
        // Typed: a number never equals a string.
        check("n == '5'", json!({"n": 5}), false);
        check("n == 5", json!({"n": "5"}), false);
    }

    #[test]
    fn numbers_of_every_json_representation() {
        // Positive JSON integers become CEL uint, negative ones int, others double.
        for (ctx, lit, expected) in [
            (json!({"n": 5}), "5", true),
            (json!({"n": 5}), "5.0", true),
            (json!({"n": 5.0}), "5", true),
            (json!({"n": -3}), "-3", true),
            (json!({"n": -3}), "-3.0", true),
            (json!({"n": 2.5}), "2.5", true),
            (json!({"n": 2.5}), "2", false),
            (json!({"n": u64::MAX}), "18446744073709551615", true),
            (json!({"n": true}), "1", false),
        ] {
            check(&format!("n == {lit}"), ctx.clone(), expected);
            check(&format!("n != {lit}"), ctx, !expected);
        }
    }

    #[test]
    fn ordering_mixes_int_uint_and_double() {
        for (v, gt_5000) in [
            (json!(6000), true),
            (json!(-1), false),
            (json!(5000.5), true),
            (json!(4999.9), false),
        ] {
            let c = json!({"amount": v});
            check("amount > 5000", c.clone(), gt_5000);
            check("amount > 5000.0", c.clone(), gt_5000);
            check("amount <= 5000", c.clone(), !gt_5000);
            check("5000 < amount", c.clone(), gt_5000);
            check("5000 >= amount", c, !gt_5000);
        }
        check("amount >= 5000", json!({"amount": 5000}), true);
        check("amount < 5000", json!({"amount": 5000}), false);
        check("t > -1.5", json!({"t": -1}), true);
        check("t > -1.5", json!({"t": -2}), false);
        check("big > 1e300", json!({"big": 1e301}), true);
        check("n > 1", json!({"n": u64::MAX}), true);
    }

    #[test]
    fn ordering_follows_agt_conversions() {
        // Numeric strings compare as numbers, as AGT's float() does.
        check("n > 10", json!({"n": "42"}), true);
        check("n > 10", json!({"n": "-4.5e1"}), false);
        check("n > 10", json!({"n": ".5"}), false);
        check("n > 10", json!({"n": "inf"}), true);
        check("n < 10", json!({"n": "-Infinity"}), true);
        // Non-numeric strings, NaN, lists and objects make it false, both ways.
        for v in [
            json!("abc"),
            json!("nan"),
            json!(" 42"),
            json!([1]),
            json!({"a": 1}),
            json!(""),
        ] {
            check("n > 10", json!({"n": v.clone()}), false);
            check("n <= 10", json!({"n": v}), false);
        }
        // Booleans are 0 and 1.
        check("flag > 0", json!({"flag": true}), true);
        check("flag > 0", json!({"flag": false}), false);
        check("flag < 1", json!({"flag": false}), true);
        check("flag >= 0", json!({"flag": false}), true);
        check("flag > 5", json!({"flag": true}), false);
        // Missing and null count as 0 (AGT: `float(actual) if actual is not None else 0`).
        check("amount < 100", json!({}), true);
        check("amount > 100", json!({}), false);
        check("amount >= 0", json!({"amount": null}), true);
        check("amount > -1", json!({"a": 1}), true);
        check("a.b.c < 1", json!({"a": "not an object"}), true);
    }

    #[test]
    fn missing_paths_give_agt_results_not_errors() {
        let c = json!({"user": {"name": "x"}, "list": [{"a": 1}], "s": "text"});
        check("user.role == 'admin'", c.clone(), false);
        check("user.role != 'admin'", c.clone(), true);
        check("user.role in ['admin']", c.clone(), false);
        check("user.role not in ['admin']", c.clone(), true);
        check("user.role", c.clone(), false);
        check("not user.role", c.clone(), true);
        check("nothing.at.all == 'x'", c.clone(), false);
        // Through a string, a list or null: AGT resolves to None.
        check("s.length == 4", c.clone(), false);
        check("list.0.a == 1", c.clone(), false);
        check("user.name.first", c.clone(), false);
        check("n.x == 1", json!({"n": null}), false);
        // `null` equals missing and null.
        check("user.role == null", c.clone(), true);
        check("user.role == None", json!({"user": {"role": null}}), true);
        check("user.role != null", json!({"user": {"role": "x"}}), true);
        check("user.name != null", c, true);
    }

    #[test]
    fn truthiness_is_pythons() {
        for (v, truthy) in [
            (json!(true), true),
            (json!(false), false),
            (json!(0), false),
            (json!(-0.0), false),
            (json!(0.0), false),
            (json!(-2), true),
            (json!(7), true),
            (json!(0.1), true),
            (json!(""), false),
            (json!("false"), true),
            (json!("0"), true),
            (json!([]), false),
            (json!([0]), true),
            (json!({}), false),
            (json!({"a": 0}), true),
            (json!(null), false),
        ] {
            check(
                "data.contains_pii",
                json!({"data": {"contains_pii": v.clone()}}),
                truthy,
            );
            check(
                "not data.contains_pii",
                json!({"data": {"contains_pii": v}}),
                !truthy,
            );
        }
        check("data.contains_pii", json!({}), false);
    }

    #[test]
    fn in_lists() {
        let c = json!({"action": {"type": "delete"}, "n": 2, "b": false, "z": null});
        check(
            "action.type in ['drop', 'delete', 'truncate']",
            c.clone(),
            true,
        );
        check("action.type in [\"drop\", \"truncate\"]", c.clone(), false);
        check("action.type not in ['drop', 'truncate']", c.clone(), true);
        check("action.type not in ['drop', 'delete']", c.clone(), false);
        check("action.type in ['x',]", c.clone(), false);
        // Bare words in a list are strings, as in every AGT SDK.
        check("action.type in [drop, delete]", c.clone(), true);
        check("n in [1, 2.0, 'two']", c.clone(), true);
        check("n in ['2']", c.clone(), false);
        check("b in [true]", c.clone(), false);
        check("b in [false, 'x']", c.clone(), true);
        check("b in [true, false]", c.clone(), true);
        check("z in [null, 1]", c.clone(), true);
        check("missing in [null]", c.clone(), true);
        check("missing not in [null]", c.clone(), false);
        check("n in [1, 3]", c, false);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let c = json!({"a": true, "b": false, "c": true});
        check("a or b and c", c.clone(), true);
        check("b and c or a", c.clone(), true);
        check("b and (c or a)", c.clone(), false);
        check("(a or b) and c", c.clone(), true);
        check("(a or b) and b", c.clone(), false);
        check("a and b or b and c", c.clone(), false);
        check("not b and c", c.clone(), true);
        check("not (b or c)", c.clone(), false);
        check("not not a", c.clone(), true);
        check("((((a))))", c.clone(), true);
        check("b or b or b or c", c, true);
        let t = translate("a or b and c").unwrap();
        assert!(t.contains(" || "), "{t}");
    }

    #[test]
    fn the_agt_examples() {
        let policy = [
            (
                "action.type in ['drop', 'delete']",
                json!({"action": {"type": "drop"}}),
                true,
            ),
            (
                "amount > 5000 and user.role != 'admin'",
                json!({"amount": 7000, "user": {"role": "dev"}}),
                true,
            ),
            (
                "amount > 5000 and user.role != 'admin'",
                json!({"amount": 7000, "user": {"role": "admin"}}),
                false,
            ),
            (
                "amount > 5000 and user.role != 'admin'",
                json!({"amount": 7000}),
                true,
            ),
            (
                "tool_name == 'search'",
                json!({"tool_name": "search"}),
                true,
            ),
            (
                "message == 'show me the secret'",
                json!({"message": "show me the secret"}),
                true,
            ),
            (
                "action.authorized",
                json!({"action": {"authorized": true}}),
                true,
            ),
            (
                "user.role in ['admin', 'operator'] or data.contains_pii",
                json!({"data": {"contains_pii": true}}),
                true,
            ),
        ];
        for (cond, ctx, expected) in policy {
            check(cond, ctx, expected);
        }
    }

    #[test]
    fn strings_are_escaped_for_cel() {
        // AGT strings have no escapes: a backslash is a backslash.
        check(
            r"path == 'C:\temp\new'",
            json!({"path": "C:\\temp\\new"}),
            true,
        );
        check("q == 'say \"hi\"'", json!({"q": "say \"hi\""}), true);
        check("q == \"it's\"", json!({"q": "it's"}), true);
        check("q == 'a or b and c'", json!({"q": "a or b and c"}), true);
        check("q == '((([[[{{{'", json!({"q": "((([[[{{{"}), true);
        check("q == '${x} + `y`'", json!({"q": "${x} + `y`"}), true);
        check(
            "q == 'line\nbreak\ttab'",
            json!({"q": "line\nbreak\ttab"}),
            true,
        );
        check("q == '\u{7}\u{0}'", json!({"q": "\u{7}\u{0}"}), true);
        check("q == ''", json!({"q": ""}), true);
        check("q == ''", json!({"q": " "}), false);
        // Injection attempts stay inside the literal.
        check("q == '\" || true || \"'", json!({"q": "x"}), false);
        check("q == '\\\" || true || \\\"'", json!({"q": "x"}), false);
    }

    #[test]
    fn unicode() {
        check(
            "名前 == 'ünïcödé ✓ 😀'",
            json!({"名前": "ünïcödé ✓ 😀"}),
            true,
        );
        check("user.naïve", json!({"user": {"naïve": 1}}), true);
        check("q in ['é', 'e']", json!({"q": "é"}), true);
        check("q == 'é'", json!({"q": "e\u{301}"}), false);
        // Columns are byte columns.
        assert!(
            err("é ==").starts_with("column 6: expected a value after `==`"),
            "{}",
            err("é ==")
        );
    }

    #[test]
    fn keys_that_are_not_cel_identifiers() {
        let c = json!({"x-request-id": "r1", "headers": {"content-type": "json", "in": 1, "true": 2, "0": 3}});
        check("x-request-id == 'r1'", c.clone(), true);
        check("headers.content-type == 'json'", c.clone(), true);
        check("headers.in == 1", c.clone(), true);
        check("headers.true == 2", c.clone(), true);
        check("headers.0 == 3", c.clone(), true);
        check("headers.content-type.x", c, false);
        let t = translate("x-request-id == 'r1'").unwrap();
        assert!(t.contains("context[\"x-request-id\"]"), "{t}");
        let t = translate("a.b == 'r1'").unwrap();
        assert!(t.contains("context.a.b"), "{t}");
    }

    #[test]
    fn malformed_input_is_rejected_with_columns() {
        for (cond, msg) in [
            ("", "column 1: condition is empty"),
            ("   \n ", "column 1: condition is empty"),
            ("a == 'x", "column 6: unterminated string literal"),
            (
                r"a == 'it\'s'",
                "column 12: unterminated string literal (AGT strings have no escape",
            ),
            (
                "action.type ==",
                "column 15: expected a value after `==`, found end of input",
            ),
            (
                "action.type == and",
                "column 16: expected a value after `==`, found `and`",
            ),
            ("a and", "column 6: expected a condition"),
            ("or a", "column 1: expected a condition"),
            (
                "a == 'x' b == 'y'",
                "column 10: expected `and`, `or` or the end of the condition, found `b`",
            ),
            (
                "a == 'x' AND b == 'y'",
                "found `AND` (keywords are lowercase: `and`)",
            ),
            ("a = 'x'", "column 3: unexpected character `=` (use `==`)"),
            (
                "a == 'x' && b",
                "column 10: unexpected character `&` (use `and`)",
            ),
            ("a || b", "column 3: unexpected character `|` (use `or`)"),
            ("!a", "column 1: unexpected character `!` (use `not`)"),
            ("a == #", "column 6: unexpected character `#`"),
            ("a ~ 1", "column 3: unexpected character `~`"),
            ("a == 5x", "column 6: malformed number `5x`"),
            ("a == 1.", "column 6: malformed number `1.`"),
            ("a == 1.2.3", "column 6: malformed number `1.2.3`"),
            ("a == 1e", "column 6: malformed number `1e`"),
            ("a > 1e999", "column 5: malformed number `1e999`"),
            (
                "a.",
                "column 3: expected a key name after `.`, found end of input",
            ),
            (
                "a. b",
                "column 3: expected a key name after `.`, found whitespace",
            ),
            ("a .b", "column 3: unexpected character `.`"),
            (
                "(a == 'x'",
                "column 10: expected `and`, `or` or `)` to close the `(` at column 1, found end of input",
            ),
            (
                "a == 'x')",
                "column 9: expected `and`, `or` or the end of the condition (this `)` closes nothing), found `)`",
            ),
            ("()", "column 2: expected a condition"),
            (
                "a > 'x'",
                "column 5: expected a number with `>` (ordering compares numbers only), found string 'x'",
            ),
            ("a >= true", "column 6: expected a number with `>=`"),
            ("'x' > a", "column 1: expected a number with `>`"),
            (
                "a == b",
                "column 6: expected a value after `==` (comparing two context paths is not supported",
            ),
            (
                "true",
                "column 5: expected a comparison operator after `true` (a literal is not a condition by itself)",
            ),
            (
                "'x'",
                "column 4: expected a comparison operator after string 'x'",
            ),
            ("5 == 5", "column 6: expected a context path after `==`"),
            (
                "a in b",
                "column 6: expected a list `[...]` after `in`, found `b`",
            ),
            ("a in []", "column 7: expected a list item"),
            (
                "a in ['x' 'y']",
                "column 11: expected `,` or `]`, found string 'y'",
            ),
            ("a in [['x']]", "column 7: expected a list item"),
            (
                "a in ['x'",
                "column 10: expected `,` or `]`, found end of input",
            ),
            (
                "a not 'x'",
                "column 7: expected `in` after `not`, found string 'x'",
            ),
            (
                "a == 1 == 1",
                "column 8: expected `and`, `or` or the end of the condition, found `==`",
            ),
            ("a < b < c", "column 5: expected a value after `<`"),
            ("not", "column 4: expected a condition"),
            (
                "'x' in a",
                "column 5: expected a comparison operator after string 'x'",
            ),
        ] {
            let e = err(cond);
            assert!(
                e.starts_with(msg) || e.contains(msg),
                "{cond:?}: got {e:?}, want {msg:?}"
            );
        }
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let long = format!("a == '{}'", "x".repeat(MAX_AGT_CONDITION_BYTES));
        assert_eq!(
            translate(&long),
            Err(AgtConditionError::TooLong {
                column: MAX_AGT_CONDITION_BYTES + 1,
                len: long.len()
            })
        );
        let ok = format!(
            "{}a{}",
            "(".repeat(MAX_AGT_DEPTH),
            ")".repeat(MAX_AGT_DEPTH)
        );
        check(&ok, json!({"a": 1}), true);
        let deep = format!(
            "{}a{}",
            "(".repeat(MAX_AGT_DEPTH + 1),
            ")".repeat(MAX_AGT_DEPTH + 1)
        );
        assert_eq!(
            translate(&deep),
            Err(AgtConditionError::TooDeep {
                column: MAX_AGT_DEPTH + 1
            })
        );
        let nots = format!("{}a", "not ".repeat(MAX_AGT_DEPTH + 1));
        assert_eq!(
            translate(&nots),
            Err(AgtConditionError::TooDeep {
                column: 4 * MAX_AGT_DEPTH + 1
            })
        );
        let mixed = format!(
            "{}a{}",
            "not (".repeat(MAX_AGT_DEPTH / 2),
            ")".repeat(MAX_AGT_DEPTH / 2)
        );
        check(&mixed, json!({"a": 1}), true);
        // A huge but flat condition does not recurse.
        let flat = vec!["a"; 800].join(" or ");
        assert!(matches!(
            translate(&flat),
            Err(AgtConditionError::TranslationTooLarge { column: 1, .. })
        ));
        let many = vec!["a == 'x'"; 100].join(" and ");
        check(&many, json!({"a": "x"}), true);
        let list = format!(
            "a in [{}]",
            (0..700)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
        check(&list, json!({"a": 699}), true);
    }

    #[test]
    fn output_passes_the_warden_cel_loader() {
        // The CEL loader bounds size and counts brackets (quotes included):
        // the deepest accepted AGT condition and bracket-heavy strings must pass.
        let env = crate::condition::environment().unwrap();
        for cond in [
            format!(
                "{}a.b > 1{}",
                "not (".repeat(MAX_AGT_DEPTH / 2),
                ")".repeat(MAX_AGT_DEPTH / 2)
            ),
            format!(
                "{}a in [1, 'x', null]{}",
                "(".repeat(MAX_AGT_DEPTH),
                ")".repeat(MAX_AGT_DEPTH)
            ),
            format!("q == '{}'", "(".repeat(1000)),
            "x-y.z and not a.b.c >= -2.5 or q != 'x'".to_owned(),
        ] {
            let cel = translate(&cond).unwrap();
            let loaded = crate::condition::Condition::compile(&env, &cel);
            assert!(loaded.is_ok(), "{cond}: {:?}\n{cel}", loaded.err());
        }
    }

    /// The reference semantics, written directly over JSON: AGT's Python
    /// engine generalised to the extended grammar.
    mod reference {
        use super::super::{Expr, Lit, NUMERIC_STRING};
        use serde_json::Value;

        /// AGT's `_get_nested`.
        fn get<'a>(ctx: &'a Value, path: &[String]) -> Option<&'a Value> {
            path.iter().try_fold(ctx, |v, k| v.as_object()?.get(k))
        }

        /// Python `bool()`.
        fn truthy(v: Option<&Value>) -> bool {
            match v {
                None | Some(Value::Null) => false,
                Some(Value::Bool(b)) => *b,
                Some(Value::Number(n)) => n.as_f64() != Some(0.0),
                Some(Value::String(s)) => !s.is_empty(),
                Some(Value::Array(a)) => !a.is_empty(),
                Some(Value::Object(o)) => !o.is_empty(),
            }
        }

        /// Typed equality with a literal.
        fn equals(v: Option<&Value>, lit: &Lit) -> bool {
            match (v, lit) {
                (None | Some(Value::Null), Lit::Null) => true,
                (Some(Value::String(s)), Lit::Str(l)) => s == l,
                (Some(Value::Bool(b)), Lit::Bool(l)) => b == l,
                (Some(Value::Number(n)), Lit::Int(l)) => n.as_f64() == Some(*l as f64),
                (Some(Value::Number(n)), Lit::Float(l)) => n.as_f64() == Some(*l),
                _ => false,
            }
        }

        /// AGT's `float(actual) if actual is not None else 0`, or `None`
        /// where AGT's comparison is false.
        fn as_number(v: Option<&Value>) -> Option<f64> {
            match v {
                None | Some(Value::Null) => Some(0.0),
                Some(Value::Bool(b)) => Some(if *b { 1.0 } else { 0.0 }),
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(s)) => {
                    let re = regex_lite(s);
                    if re { s.parse::<f64>().ok() } else { None }
                }
                _ => None,
            }
        }

        /// Whether `s` is a numeric string, by a hand-written check that
        /// mirrors [`NUMERIC_STRING`] (kept independent of it on purpose).
        fn regex_lite(s: &str) -> bool {
            let _ = NUMERIC_STRING;
            let t = s.strip_prefix(['+', '-']).unwrap_or(s);
            let lower = t.to_ascii_lowercase();
            if lower == "inf" || lower == "infinity" {
                return true;
            }
            let (mant, exp) = match t.find(['e', 'E']) {
                Some(i) => (&t[..i], Some(&t[i + 1..])),
                None => (t, None),
            };
            let exp_ok = exp.is_none_or(|e| {
                let d = e.strip_prefix(['+', '-']).unwrap_or(e);
                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
            });
            let mut parts = mant.splitn(2, '.');
            let int = parts.next().unwrap_or("");
            let frac = parts.next();
            let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
            let mant_ok = digits(int)
                && frac.is_none_or(digits)
                && (!int.is_empty() || frac.is_some_and(|f| !f.is_empty()));
            mant_ok && exp_ok
        }

        /// Evaluates `e` over `ctx`.
        pub(super) fn eval(e: &Expr, ctx: &Value) -> bool {
            match e {
                Expr::Or(items) => items.iter().any(|i| eval(i, ctx)),
                Expr::And(items) => items.iter().all(|i| eval(i, ctx)),
                Expr::Not(i) => !eval(i, ctx),
                Expr::Truthy(p) => truthy(get(ctx, p)),
                Expr::Equals {
                    path,
                    lits,
                    negated,
                } => {
                    let v = get(ctx, path);
                    lits.iter().any(|l| equals(v, l)) != *negated
                }
                Expr::Order { path, op, number } => {
                    as_number(get(ctx, path)).is_some_and(|x| op.holds(x, *number))
                }
            }
        }
    }

    #[test]
    fn cel_agrees_with_the_reference_semantics() {
        let conditions = [
            "v",
            "not v",
            "v == 0",
            "v != 0",
            "v == 1.5",
            "v == ''",
            "v == 'x'",
            "v != 'x'",
            "v == true",
            "v == false",
            "v == null",
            "v != null",
            "v > 0",
            "v >= 0",
            "v < 0",
            "v <= 0",
            "v > 1",
            "v < 1",
            "v > -1",
            "v < 0.5",
            "v >= 1",
            "v <= -2.5",
            "v in [0, 'x', true]",
            "v not in [1, null]",
            "v in [false]",
            "v.w",
            "v.w == 1",
            "v.w < 3",
            "v.w != 'a'",
            "v > 0 and v < 10",
            "v < 0 or v.w",
            "not (v or v.w)",
        ];
        let values = [
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(1),
            json!(-1),
            json!(1.5),
            json!(-2.5),
            json!(0.0),
            json!(7),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(""),
            json!("x"),
            json!("a"),
            json!("0"),
            json!("1"),
            json!("-2.5"),
            json!("1e3"),
            json!("inf"),
            json!("-Infinity"),
            json!("nan"),
            json!("1_0"),
            json!(" 1"),
            json!("5."),
            json!(".5"),
            json!([]),
            json!([1]),
            json!({}),
            json!({"w": 1}),
            json!({"w": "a"}),
            json!({"w": null}),
            json!({"w": [2]}),
            json!({"w": {"x": 1}}),
            json!({"w": 2.9}),
        ];
        let mut contexts: Vec<Value> = values.iter().map(|v| json!({ "v": v })).collect();
        contexts.push(json!({}));
        contexts.push(json!({"other": 1}));
        for cond in conditions {
            let ast = parse(cond).unwrap();
            for ctx in &contexts {
                let want = reference::eval(&ast, ctx);
                assert_eq!(run(cond, ctx), Ok(want), "{cond} over {ctx}");
            }
        }
    }

    #[test]
    fn parse_builds_the_expected_tree() {
        let p = |s: &str| parse(s).unwrap();
        let path = |s: &str| s.split('.').map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(
            p("a or b and not c"),
            Expr::Or(vec![
                Expr::Truthy(path("a")),
                Expr::And(vec![
                    Expr::Truthy(path("b")),
                    Expr::Not(Box::new(Expr::Truthy(path("c"))))
                ]),
            ])
        );
        assert_eq!(
            p("3 <= x.y"),
            Expr::Order {
                path: path("x.y"),
                op: Rel::Ge,
                number: 3.0
            }
        );
        assert_eq!(
            p("k not in ['a', 2, True, None, -1.5, bare.word]"),
            Expr::Equals {
                path: path("k"),
                lits: vec![
                    Lit::Str("a".into()),
                    Lit::Int(2),
                    Lit::Bool(true),
                    Lit::Null,
                    Lit::Float(-1.5),
                    Lit::Str("bare.word".into())
                ],
                negated: true
            }
        );
        assert_eq!(p("true.x"), Expr::Truthy(path("true.x")));
        assert_eq!(
            p("n == 99999999999999999999"),
            Expr::Equals {
                path: path("n"),
                lits: vec![Lit::Float(1e20)],
                negated: false
            }
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]
        /// Arbitrary input never panics; whatever translates also compiles.
        #[test]
        fn arbitrary_input_never_panics(s in "[a-c .()\\[\\]'\"=!<>0-9,_-]{0,40}|(not |and |or |in |a |b\\.c |== |> |'x' |1 |\\( |\\) ){0,12}") {
            if let Ok(cel) = translate(&s) {
                proptest::prop_assert!(cel::Program::compile(&cel).is_ok(), "{} -> {}", s, cel);
                let mut context = cel::Context::default();
                context.add_variable_from_value("context", cel::to_value(json!({"a": 1, "b": {"c": "x"}})).unwrap());
                let out = cel::Program::compile(&cel).unwrap().execute(&context);
                proptest::prop_assert!(matches!(out, Ok(cel::Value::Bool(_))), "{} -> {} -> {:?}", s, cel, out);
            }
        }
    }
}
