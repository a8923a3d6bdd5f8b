//! Native evaluation of the common CEL subset, straight over the action's JSON.
//!
//! Most policy conditions compare fields of `args` with literals. The `cel`
//! interpreter pays for generality on every call (qualified-name lookups,
//! boxed values, a map conversion of `args`); this module compiles the
//! subset below into a small tree evaluated over borrowed JSON with no
//! allocation on the success path. Anything outside the subset runs on the
//! interpreter. The semantics are the `cel` crate's, operator for operator
//! (including error propagation through `&&`/`||` and cross-type numeric
//! comparison); a differential property test holds the two together.
//!
//! Subset: literals (null, bool, int, uint, double, string); variables with
//! field selection and literal indexing (`args.a.b`, `args["k"]`, `args.xs[0]`);
//! the agent facts `agent.trust`, `agent.tier`, `agent.ring`;
//! `has()`; `!`, `&&`, `||`; `==`, `!=`, `<`, `<=`, `>`, `>=`; `x in [literals]`;
//! `startsWith`, `endsWith`, `contains` and `matches` with literal arguments;
//! `size()`; `all()` and `exists()` over lists and map keys.

use crate::facts::AgentFacts;
use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};
use serde_json::{Map, Value as J};
use std::cmp::Ordering;
use warden_core::Action;

/// A literal from the expression.
#[derive(Debug, Clone)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Box<str>),
}

/// The variable a path starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Root {
    Point,
    Tool,
    Args,
    Context,
    /// `agent.id` / `session.id`.
    AgentId,
    SessionId,
    /// `agent.trust`, `agent.tier`, `agent.ring`: the kernel's facts.
    AgentTrust,
    AgentTier,
    AgentRing,
    /// A comprehension variable: its slot in the evaluation scope.
    Var(u32),
}

/// One step of a path.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    Key(Box<str>),
    Index(i64),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum StrOp {
    StartsWith,
    EndsWith,
    Contains,
}

/// A compiled expression of the subset.
#[derive(Debug)]
pub(crate) enum Fast {
    Lit(Lit),
    Path(Root, Box<[Step]>),
    /// `has(<path>.<field>)`.
    Has(Root, Box<[Step]>, Box<str>),
    Not(Box<Fast>),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    Cmp(Cmp, Box<Fast>, Box<Fast>),
    InList(Box<Fast>, Box<[Lit]>),
    Str(StrOp, Box<Fast>, Box<str>),
    Matches(Box<Fast>, std::sync::Arc<regex::Regex>),
    Size(Box<Fast>),
    /// `range.all(x, pred)` (`exists == false`) or `range.exists(x, pred)`.
    Comp {
        exists: bool,
        range: Box<Fast>,
        pred: Box<Fast>,
    },
}

/// A value during evaluation, borrowed from the action or the expression.
#[derive(Debug, Clone, Copy)]
enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(&'a str),
    List(&'a [J]),
    Map(&'a Map<String, J>),
}

/// Evaluation failure (the message is built only on this path).
pub(crate) type Fail = String;

impl Fast {
    /// Compiles `e` if it is entirely inside the subset. A literal regex that
    /// does not compile is reported as `Err` (a load error).
    pub(crate) fn compile(e: &IdedExpr) -> Result<Option<Fast>, String> {
        Fast::compile_in(e, &mut Vec::new())
    }

    /// Compiles `e` with the comprehension variables in `scope` (innermost last).
    fn compile_in(e: &IdedExpr, scope: &mut Vec<String>) -> Result<Option<Fast>, String> {
        Ok(match &e.expr {
            Expr::Literal(l) => lit(l).map(Fast::Lit),
            Expr::Ident(_) | Expr::Select(_) => match &e.expr {
                Expr::Select(s) if s.test => {
                    let Some((root, steps)) = path(&s.operand, scope) else {
                        return Ok(None);
                    };
                    match root {
                        Root::Args | Root::Context | Root::Var(_) => {
                            Some(Fast::Has(root, steps.into(), s.field.as_str().into()))
                        }
                        _ => None,
                    }
                }
                _ => path(e, scope).map(|(r, s)| Fast::Path(r, s.into())),
            },
            Expr::Call(c) => {
                let args = &c.args;
                match (c.func_name.as_str(), &c.target, args.len()) {
                    (operators::INDEX, None, 2) => {
                        path(e, scope).map(|(r, s)| Fast::Path(r, s.into()))
                    }
                    (operators::LOGICAL_NOT, None, 1) => {
                        Fast::compile_in(&args[0], scope)?.map(|a| Fast::Not(Box::new(a)))
                    }
                    (operators::LOGICAL_AND, None, 2) => {
                        pair(args, scope)?.map(|(a, b)| Fast::And(a, b))
                    }
                    (operators::LOGICAL_OR, None, 2) => {
                        pair(args, scope)?.map(|(a, b)| Fast::Or(a, b))
                    }
                    (op, None, 2) if cmp_op(op).is_some() => {
                        let op = cmp_op(op).unwrap_or(Cmp::Eq);
                        pair(args, scope)?.map(|(a, b)| Fast::Cmp(op, a, b))
                    }
                    (operators::IN, None, 2) => {
                        let Expr::List(list) = &args[1].expr else {
                            return Ok(None);
                        };
                        if !list.optional_indices.is_empty() {
                            return Ok(None);
                        }
                        let lits: Option<Vec<Lit>> = list
                            .elements
                            .iter()
                            .map(|el| match &el.expr {
                                Expr::Literal(l) => lit(l),
                                _ => None,
                            })
                            .collect();
                        match (Fast::compile_in(&args[0], scope)?, lits) {
                            (Some(x), Some(l)) => Some(Fast::InList(Box::new(x), l.into())),
                            _ => None,
                        }
                    }
                    ("startsWith" | "endsWith" | "contains", Some(t), 1) => {
                        let op = match c.func_name.as_str() {
                            "startsWith" => StrOp::StartsWith,
                            "endsWith" => StrOp::EndsWith,
                            _ => StrOp::Contains,
                        };
                        match (Fast::compile_in(t, scope)?, str_lit(&args[0])) {
                            (Some(x), Some(s)) => Some(Fast::Str(op, Box::new(x), s.into())),
                            _ => None,
                        }
                    }
                    ("matches", Some(t), 1) => matches(t, &args[0], scope)?,
                    ("matches", None, 2) => matches(&args[0], &args[1], scope)?,
                    ("size", Some(t), 0) => {
                        Fast::compile_in(t, scope)?.map(|x| Fast::Size(Box::new(x)))
                    }
                    ("size", None, 1) => {
                        Fast::compile_in(&args[0], scope)?.map(|x| Fast::Size(Box::new(x)))
                    }
                    _ => None,
                }
            }
            Expr::Comprehension(c) => comprehension(c, scope)?,
            _ => None,
        })
    }

    /// Evaluates to a bool, with the interpreter's error semantics.
    pub(crate) fn eval_bool(&self, action: &Action, facts: AgentFacts) -> Result<bool, Fail> {
        match self.eval(action, facts, &mut Vec::new())? {
            V::Bool(b) => Ok(b),
            other => Err(format!(
                "condition returned {} instead of a bool",
                type_name(&other)
            )),
        }
    }

    fn eval<'a>(
        &'a self,
        action: &'a Action,
        facts: AgentFacts,
        env: &mut Vec<V<'a>>,
    ) -> Result<V<'a>, Fail> {
        match self {
            Fast::Lit(l) => Ok(lit_v(l)),
            Fast::Path(root, steps) => resolve(action, facts, *root, steps, env),
            Fast::Has(root, steps, field) => match resolve(action, facts, *root, steps, env)? {
                V::Map(m) => Ok(V::Bool(m.contains_key(&**field))),
                other => Err(format!("no such key `{field}` on {}", type_name(&other))),
            },
            Fast::Not(a) => match a.eval(action, facts, env)? {
                V::Bool(b) => Ok(V::Bool(!b)),
                other => Err(format!("no such overload: !{}", type_name(&other))),
            },
            Fast::And(a, b) => {
                let left = a.eval(action, facts, env).and_then(as_bool);
                if left == Ok(false) {
                    return Ok(V::Bool(false));
                }
                let right = b.eval(action, facts, env)?;
                match (left, right) {
                    (Ok(true), V::Bool(r)) => Ok(V::Bool(r)),
                    (Err(_), V::Bool(false)) => Ok(V::Bool(false)),
                    (Err(e), _) => Err(e),
                    (_, r) => Err(format!("no such overload: bool && {}", type_name(&r))),
                }
            }
            Fast::Or(a, b) => {
                let left = a.eval(action, facts, env).and_then(as_bool);
                if left == Ok(true) {
                    return Ok(V::Bool(true));
                }
                let right = b.eval(action, facts, env)?;
                match (left, right) {
                    (Ok(false), V::Bool(r)) => Ok(V::Bool(r)),
                    (Err(_), V::Bool(true)) => Ok(V::Bool(true)),
                    (Err(e), _) => Err(e),
                    (_, r) => Err(format!("no such overload: bool || {}", type_name(&r))),
                }
            }
            Fast::Cmp(op, a, b) => {
                let x = a.eval(action, facts, env)?;
                let y = b.eval(action, facts, env)?;
                Ok(V::Bool(match op {
                    Cmp::Eq => equals(&x, &y),
                    Cmp::Ne => !equals(&x, &y),
                    Cmp::Lt => order(&x, &y)? == Ordering::Less,
                    Cmp::Le => order(&x, &y)? != Ordering::Greater,
                    Cmp::Gt => order(&x, &y)? == Ordering::Greater,
                    Cmp::Ge => order(&x, &y)? != Ordering::Less,
                }))
            }
            Fast::InList(x, list) => {
                let x = x.eval(action, facts, env)?;
                Ok(V::Bool(list.iter().any(|l| equals(&x, &lit_v(l)))))
            }
            Fast::Str(op, x, needle) => match x.eval(action, facts, env)? {
                V::Str(s) => Ok(V::Bool(match op {
                    StrOp::StartsWith => s.starts_with(&**needle),
                    StrOp::EndsWith => s.ends_with(&**needle),
                    StrOp::Contains => s.contains(&**needle),
                })),
                other => Err(format!(
                    "no such overload: {}.{op:?}(string)",
                    type_name(&other)
                )),
            },
            Fast::Matches(x, re) => match x.eval(action, facts, env)? {
                V::Str(s) => Ok(V::Bool(re.is_match(s))),
                other => Err(format!(
                    "no such overload: {}.matches(string)",
                    type_name(&other)
                )),
            },
            Fast::Size(x) => match x.eval(action, facts, env)? {
                V::Str(s) => Ok(V::Int(s.chars().count() as i64)),
                V::List(l) => Ok(V::Int(l.len() as i64)),
                V::Map(m) => Ok(V::Int(m.len() as i64)),
                other => Err(format!("no such overload: size({})", type_name(&other))),
            },
            Fast::Comp {
                exists,
                range,
                pred,
            } => {
                let range = range.eval(action, facts, env)?;
                // CEL semantics: a deciding element (true for exists, false
                // for all) wins over errors from other elements.
                let mut error = None;
                let mut step = |item: V<'a>, env: &mut Vec<V<'a>>| -> bool {
                    env.push(item);
                    let r = pred.eval(action, facts, env).and_then(as_bool);
                    env.pop();
                    match r {
                        Ok(b) => b == *exists,
                        Err(e) => {
                            error.get_or_insert(e);
                            false
                        }
                    }
                };
                let decided = match range {
                    V::List(items) => items.iter().any(|j| step(json_v(j), env)),
                    V::Map(m) => m.keys().any(|k| step(V::Str(k), env)),
                    other => {
                        return Err(format!(
                            "no such overload: {}.all/exists",
                            type_name(&other)
                        ));
                    }
                };
                match (decided, error) {
                    (true, _) => Ok(V::Bool(*exists)),
                    (false, Some(e)) => Err(e),
                    (false, None) => Ok(V::Bool(!*exists)),
                }
            }
        }
    }
}

/// Two compiled operands.
type Pair = (Box<Fast>, Box<Fast>);

fn pair(args: &[IdedExpr], scope: &mut Vec<String>) -> Result<Option<Pair>, String> {
    Ok(
        match (
            Fast::compile_in(&args[0], scope)?,
            Fast::compile_in(&args[1], scope)?,
        ) {
            (Some(a), Some(b)) => Some((Box::new(a), Box::new(b))),
            _ => None,
        },
    )
}

fn matches(
    target: &IdedExpr,
    pattern: &IdedExpr,
    scope: &mut Vec<String>,
) -> Result<Option<Fast>, String> {
    let (Some(x), Some(p)) = (Fast::compile_in(target, scope)?, str_lit(pattern)) else {
        return Ok(None);
    };
    Ok(Some(Fast::Matches(
        Box::new(x),
        crate::condition::regex(p)?,
    )))
}

/// Recognises the expansion of the `all` and `exists` macros: an accumulator
/// starting at `true`/`false`, folded with `&&`/`||` over one predicate.
fn comprehension(c: &ComprehensionExpr, scope: &mut Vec<String>) -> Result<Option<Fast>, String> {
    if c.iter_var2.is_some() {
        return Ok(None);
    }
    let (Expr::Literal(LiteralValue::Boolean(init)), Expr::Call(step), Expr::Ident(result)) =
        (&c.accu_init.expr, &c.loop_step.expr, &c.result.expr)
    else {
        return Ok(None);
    };
    let exists = match (*init.inner(), step.func_name.as_str()) {
        (true, operators::LOGICAL_AND) => false,
        (false, operators::LOGICAL_OR) => true,
        _ => return Ok(None),
    };
    let accu_first =
        matches!(step.args.first().map(|a| &a.expr), Some(Expr::Ident(a)) if *a == c.accu_var);
    if *result != c.accu_var || step.target.is_some() || step.args.len() != 2 || !accu_first {
        return Ok(None);
    }
    let Some(range) = Fast::compile_in(&c.iter_range, scope)? else {
        return Ok(None);
    };
    scope.push(c.iter_var.clone());
    let pred = Fast::compile_in(&step.args[1], scope);
    scope.pop();
    Ok(pred?.map(|pred| Fast::Comp {
        exists,
        range: Box::new(range),
        pred: Box::new(pred),
    }))
}

fn cmp_op(op: &str) -> Option<Cmp> {
    Some(match op {
        operators::EQUALS => Cmp::Eq,
        operators::NOT_EQUALS => Cmp::Ne,
        operators::LESS => Cmp::Lt,
        operators::LESS_EQUALS => Cmp::Le,
        operators::GREATER => Cmp::Gt,
        operators::GREATER_EQUALS => Cmp::Ge,
        _ => return None,
    })
}

fn lit(l: &LiteralValue) -> Option<Lit> {
    Some(match l {
        LiteralValue::Null => Lit::Null,
        LiteralValue::Boolean(b) => Lit::Bool(*b.inner()),
        LiteralValue::Int(i) => Lit::Int(*i.inner()),
        LiteralValue::UInt(u) => Lit::UInt(*u.inner()),
        LiteralValue::Double(d) => Lit::Double(*d.inner()),
        LiteralValue::String(s) => Lit::Str(s.inner().into()),
        LiteralValue::Bytes(_) => return None,
    })
}

fn str_lit(e: &IdedExpr) -> Option<&str> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
        _ => None,
    }
}

/// A variable followed by selections and literal indexes, outermost last.
fn path(e: &IdedExpr, scope: &[String]) -> Option<(Root, Vec<Step>)> {
    match &e.expr {
        Expr::Ident(name) if scope.contains(name) => {
            let slot = scope.iter().rposition(|v| v == name)?;
            Some((Root::Var(u32::try_from(slot).ok()?), Vec::new()))
        }
        Expr::Ident(name) => Some((
            match name.as_str() {
                "point" => Root::Point,
                "tool" => Root::Tool,
                "args" => Root::Args,
                "context" => Root::Context,
                _ => return None,
            },
            Vec::new(),
        )),
        Expr::Select(s) if !s.test => {
            // `agent.{id,trust,tier,ring}` / `session.id` are the only fields those maps have.
            if let Expr::Ident(name) = &s.operand.expr
                && !scope.contains(name)
            {
                match (name.as_str(), s.field.as_str()) {
                    ("agent", "id") => return Some((Root::AgentId, Vec::new())),
                    ("agent", "trust") => return Some((Root::AgentTrust, Vec::new())),
                    ("agent", "tier") => return Some((Root::AgentTier, Vec::new())),
                    ("agent", "ring") => return Some((Root::AgentRing, Vec::new())),
                    ("session", "id") => return Some((Root::SessionId, Vec::new())),
                    ("agent" | "session", _) => return None,
                    _ => {}
                }
            }
            let (root, mut steps) = path(&s.operand, scope)?;
            if !matches!(root, Root::Args | Root::Context | Root::Var(_)) {
                return None;
            }
            steps.push(Step::Key(s.field.as_str().into()));
            Some((root, steps))
        }
        Expr::Call(c)
            if c.func_name == operators::INDEX && c.target.is_none() && c.args.len() == 2 =>
        {
            let (root, mut steps) = path(&c.args[0], scope)?;
            if !matches!(root, Root::Args | Root::Context | Root::Var(_)) {
                return None;
            }
            match &c.args[1].expr {
                Expr::Literal(LiteralValue::String(k)) => steps.push(Step::Key(k.inner().into())),
                Expr::Literal(LiteralValue::Int(i)) => steps.push(Step::Index(*i.inner())),
                _ => return None,
            }
            Some((root, steps))
        }
        _ => None,
    }
}

fn resolve<'a>(
    action: &'a Action,
    facts: AgentFacts,
    root: Root,
    steps: &'a [Step],
    env: &[V<'a>],
) -> Result<V<'a>, Fail> {
    let map = match root {
        Root::Var(slot) => {
            let start = usize::try_from(slot).ok().and_then(|i| env.get(i)).copied();
            return walk(
                start.ok_or_else(|| "unbound comprehension variable".to_owned())?,
                steps,
            );
        }
        Root::Point => return Ok(V::Str(action.point.as_str())),
        Root::Tool => return Ok(V::Str(action.tool().unwrap_or(""))),
        Root::AgentId => return Ok(V::Str(&action.agent)),
        Root::AgentTrust => return Ok(V::Int(i64::from(facts.trust()))),
        Root::AgentTier => return Ok(V::Str(facts.tier())),
        Root::AgentRing => return Ok(V::Int(i64::from(facts.ring().get()))),
        Root::SessionId => {
            return action
                .session
                .as_deref()
                .map(V::Str)
                .ok_or_else(|| "no such key: id".to_owned());
        }
        Root::Args => &action.args,
        Root::Context => &action.context,
    };
    walk(V::Map(map), steps)
}

/// Follows field selections and literal indexes from `cur`.
fn walk<'a>(mut cur: V<'a>, steps: &'a [Step]) -> Result<V<'a>, Fail> {
    for step in steps {
        let next = match (cur, step) {
            (V::Map(m), Step::Key(k)) => m.get(&**k),
            (V::List(l), Step::Index(i)) => usize::try_from(*i).ok().and_then(|i| l.get(i)),
            _ => None,
        };
        cur = match next {
            Some(j) => json_v(j),
            None => {
                return Err(match step {
                    Step::Key(k) => format!("no such key: {k}"),
                    Step::Index(i) => format!("no such index: {i}"),
                });
            }
        };
    }
    Ok(cur)
}

fn json_v(j: &J) -> V<'_> {
    match j {
        J::Null => V::Null,
        J::Bool(b) => V::Bool(*b),
        J::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => V::Int(i),
            (None, Some(u)) => V::UInt(u),
            _ => V::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => V::Str(s),
        J::Array(a) => V::List(a),
        J::Object(o) => V::Map(o),
    }
}

fn lit_v(l: &Lit) -> V<'_> {
    match l {
        Lit::Null => V::Null,
        Lit::Bool(b) => V::Bool(*b),
        Lit::Int(i) => V::Int(*i),
        Lit::UInt(u) => V::UInt(*u),
        Lit::Double(d) => V::Double(*d),
        Lit::Str(s) => V::Str(s),
    }
}

fn as_bool(v: V<'_>) -> Result<bool, Fail> {
    match v {
        V::Bool(b) => Ok(b),
        other => Err(format!(
            "no such overload: expected bool, got {}",
            type_name(&other)
        )),
    }
}

fn type_name(v: &V<'_>) -> &'static str {
    match v {
        V::Null => "null",
        V::Bool(_) => "bool",
        V::Int(_) => "int",
        V::UInt(_) => "uint",
        V::Double(_) => "double",
        V::Str(_) => "string",
        V::List(_) => "list",
        V::Map(_) => "map",
    }
}

/// Numeric and same-type ordering, as the interpreter's `Comparer`s do it.
fn order(x: &V<'_>, y: &V<'_>) -> Result<Ordering, Fail> {
    let nc = || format!("no such overload: {} < {}", type_name(x), type_name(y));
    match (*x, *y) {
        (V::Int(a), V::Int(b)) => Ok(a.cmp(&b)),
        (V::UInt(a), V::UInt(b)) => Ok(a.cmp(&b)),
        (V::Int(a), V::UInt(b)) => Ok(u64::try_from(a)
            .map(|a| a.cmp(&b))
            .unwrap_or(Ordering::Less)),
        (V::UInt(a), V::Int(b)) => Ok(i64::try_from(a)
            .map(|a| a.cmp(&b))
            .unwrap_or(Ordering::Greater)),
        (V::Double(a), V::Double(b)) => a.partial_cmp(&b).ok_or_else(nc),
        (V::Int(a), V::Double(b)) => (a as f64).partial_cmp(&b).ok_or_else(nc),
        (V::UInt(a), V::Double(b)) => (a as f64).partial_cmp(&b).ok_or_else(nc),
        (V::Double(a), V::Int(b)) => a.partial_cmp(&(b as f64)).ok_or_else(nc),
        (V::Double(a), V::UInt(b)) => a.partial_cmp(&(b as f64)).ok_or_else(nc),
        (V::Str(a), V::Str(b)) => Ok(a.cmp(b)),
        (V::Bool(a), V::Bool(b)) => Ok(a.cmp(&b)),
        _ => Err(nc()),
    }
}

/// CEL equality: numbers by value across types, lists element-wise, maps by key; other mixes are unequal.
fn equals(x: &V<'_>, y: &V<'_>) -> bool {
    match (*x, *y) {
        (V::Null, V::Null) => true,
        (V::List(a), V::List(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(p, q)| equals(&json_v(p), &json_v(q)))
        }
        (V::Map(a), V::Map(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| equals(&json_v(v), &json_v(w))))
        }
        _ => order(x, y).is_ok_and(|o| o == Ordering::Equal),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use crate::condition::{ActionVars, Condition, environment};
    use crate::facts::AgentFacts;
    use crate::rings::Ring;
    use cel::Context;
    use proptest::prelude::*;
    use serde_json::json;
    use std::sync::Arc;
    use warden_core::Action;

    /// Both evaluators on one condition: (native, interpreter), errors collapsed to `Err(())`.
    fn both(src: &str, action: &Action) -> (Option<Result<bool, ()>>, Result<bool, ()>) {
        both_with(src, action, FACTS)
    }

    const FACTS: AgentFacts = AgentFacts::BASELINE;

    fn both_with(
        src: &str,
        action: &Action,
        facts: AgentFacts,
    ) -> (Option<Result<bool, ()>>, Result<bool, ()>) {
        let env = environment().unwrap();
        let c = Condition::compile(&env, src).unwrap_or_else(|e| panic!("{src}: {e}"));
        let fast = c.fast().map(|f| f.eval_bool(action, facts).map_err(|_| ()));
        let vars = ActionVars::new(action, &facts);
        let mut ctx = Context::with_env(Arc::clone(&env));
        ctx.set_variable_resolver(&vars);
        (fast, c.eval(&ctx).map_err(|_| ()))
    }

    fn action(args: serde_json::Value) -> Action {
        Action::tool_call("bot", "sql.query")
            .unwrap()
            .with_session("s1")
            .with_args(args.as_object().unwrap().clone())
            .with_context(json!({"k": "v", "n": 2}).as_object().unwrap().clone())
    }

    #[test]
    fn subset_is_recognised() {
        let a = action(json!({"a": 1}));
        for src in [
            "args.a > 0 && tool == 'sql.query'",
            "has(args.a) || args['a-b'] == 1",
            "args.xs[0] in [1, 2u, 'x', null]",
            "size(args.s) < 3 && args.s.size() > 0",
            "agent.id.startsWith('b') && session.id.endsWith('1') && context.k.contains('v')",
            "args.s.matches('^(?i)drop')",
            "!(point == 'input')",
            "args.xs.exists(x, x > 1)",
            "args.m.all(k, k.startsWith('a'))",
            "args.xs.exists(x, x.ys.all(y, y.matches('^a')))",
            "agent.trust >= 700 && agent.tier == 'trusted' && agent.ring <= 1",
            "agent.tier in ['trusted', 'verified'] || agent.ring in [0, 1]",
        ] {
            assert!(both(src, &a).0.is_some(), "{src} should be native");
        }
        for src in [
            "args.a + 1 > 2",
            "int(args.a) == 1",
            "agent == {'id': 'bot'}",
            "agent['trust'] > 1",
            "agent.trust + 1 > 2",
            "args.xs.exists_one(x, x > 1)",
            "args.xs.map(x, x * 2) == [2]",
        ] {
            assert!(both(src, &a).0.is_none(), "{src} should be interpreted");
        }
    }

    #[test]
    fn agent_facts_agree_with_interpreter() {
        let a = action(json!({"a": 1}));
        let cases = [
            "agent.trust >= 700",
            "agent.trust > 819",
            "agent.trust == 820.0",
            "agent.trust == 820u",
            "agent.tier == 'trusted'",
            "agent.tier in ['standard', 'trusted']",
            "agent.ring <= 1",
            "agent.ring == 1 && agent.id == 'bot'",
            "agent.tier.startsWith('tr')",
            "agent.trust < args.a",
            "agent.tier > 1",
            "agent['trust'] >= 700",
            "agent.trust + 0 >= 700",
        ];
        for facts in [
            FACTS,
            AgentFacts::new(820, "trusted", Ring::new(1).unwrap()).unwrap(),
            AgentFacts::new(0, "untrusted", Ring::LOWEST).unwrap(),
            AgentFacts::new(1000, "verified", Ring::ZERO).unwrap(),
        ] {
            for src in cases {
                let (fast, interp) = both_with(src, &a, facts);
                if let Some(fast) = fast {
                    assert_eq!(fast, interp, "{src} with {facts:?}");
                }
            }
        }
        let trusted = AgentFacts::new(820, "trusted", Ring::new(1).unwrap()).unwrap();
        assert_eq!(
            both_with("agent.trust >= 700", &a, trusted).0,
            Some(Ok(true))
        );
        assert_eq!(
            both_with("agent.trust >= 700", &a, FACTS).0,
            Some(Ok(false))
        );
        assert_eq!(both_with("agent.ring <= 1", &a, trusted).1, Ok(true));
        assert_eq!(
            both_with("agent['tier'] == 'trusted'", &a, trusted).1,
            Ok(true)
        );
    }

    #[test]
    fn bad_regex_literal_is_a_load_error() {
        let env = environment().unwrap();
        assert!(
            Condition::compile(&env, "args.s.matches('(unclosed')")
                .unwrap_err()
                .contains("invalid regex")
        );
    }

    fn lit() -> impl Strategy<Value = String> {
        prop_oneof![
            (-3i64..4).prop_map(|i| i.to_string()),
            (0u64..4).prop_map(|u| format!("{u}u")),
            prop_oneof![Just("1.0"), Just("-0.5"), Just("2.5"), Just("0.0")]
                .prop_map(str::to_owned),
            prop_oneof![
                Just("'a'"),
                Just("'ab'"),
                Just("''"),
                Just("'é'"),
                Just("'DROP'"),
                Just("'trusted'")
            ]
            .prop_map(str::to_owned),
            prop_oneof![Just("true"), Just("false"), Just("null")].prop_map(str::to_owned),
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("args.a"),
            Just("args.b"),
            Just("args.a.c"),
            Just("args['a']"),
            Just("args.xs[0]"),
            Just("args.xs[5]"),
            Just("args.xs"),
            Just("args.m"),
            Just("tool"),
            Just("point"),
            Just("agent.id"),
            Just("agent.trust"),
            Just("agent.tier"),
            Just("agent.ring"),
            Just("session.id"),
            Just("context.k"),
            Just("context.n"),
            Just("args"),
        ]
        .prop_map(str::to_owned)
    }

    fn expr() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            lit(),
            path(),
            Just("has(args.a)".to_owned()),
            Just("has(args.a.c)".to_owned())
        ];
        expr_over(leaf.boxed())
    }

    /// Comprehensions: a predicate over the iteration variable `v` (and the action).
    fn comp() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            lit(),
            path(),
            Just("v".to_owned()),
            Just("v.c".to_owned()),
            Just("has(v.c)".to_owned()),
            Just("v.size()".to_owned()),
        ];
        let range = prop_oneof![
            Just("args.xs"),
            Just("args.m"),
            Just("args.a"),
            Just("args")
        ];
        (
            range,
            prop_oneof![Just("all"), Just("exists")],
            expr_over(leaf.boxed()),
        )
            .prop_map(|(r, k, p)| format!("{r}.{k}(v, {p})"))
    }

    fn expr_over(leaf: BoxedStrategy<String>) -> impl Strategy<Value = String> {
        leaf.prop_recursive(4, 24, 2, |inner| {
            prop_oneof![
                (
                    inner.clone(),
                    prop_oneof![
                        Just("&&"),
                        Just("||"),
                        Just("=="),
                        Just("!="),
                        Just("<"),
                        Just("<="),
                        Just(">"),
                        Just(">=")
                    ],
                    inner.clone()
                )
                    .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
                inner.clone().prop_map(|a| format!("!({a})")),
                inner.clone().prop_map(|a| format!("size({a})")),
                (inner.clone(), prop::collection::vec(lit(), 0..4))
                    .prop_map(|(a, l)| format!("({a} in [{}])", l.join(", "))),
                (
                    inner.clone(),
                    prop_oneof![Just("startsWith"), Just("endsWith"), Just("contains")],
                    prop_oneof![Just("'a'"), Just("''"), Just("'b'")]
                )
                    .prop_map(|(a, f, s)| format!("{a}.{f}({s})")),
                inner.prop_map(|a| format!("{a}.matches('^a')")),
            ]
        })
    }

    fn agent_facts() -> impl Strategy<Value = AgentFacts> {
        (
            prop_oneof![Just(0u16), Just(1), Just(2), Just(400), Just(1000)],
            prop::sample::select(crate::rings::TIER_NAMES.to_vec()),
            0u8..4,
        )
            .prop_map(|(t, tier, r)| AgentFacts::new(t, tier, Ring::new(r).unwrap()).unwrap())
    }

    fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!(null)),
            Just(json!(true)),
            Just(json!(false)),
            Just(json!(0)),
            Just(json!(1)),
            Just(json!(-2)),
            Just(json!(2.5)),
            Just(json!(1.0)),
            Just(json!(u64::MAX)),
            Just(json!("a")),
            Just(json!("ab")),
            Just(json!("")),
            Just(json!("é")),
            Just(json!([1, "a"])),
            Just(json!({"c": 1})),
            Just(json!({"c": "a"})),
            Just(json!([])),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn native_agrees_with_interpreter(
            src in expr(),
            a in prop::option::of(json_leaf()),
            b in prop::option::of(json_leaf()),
            xs in prop::option::of(prop::collection::vec(json_leaf(), 0..3)),
            m in prop::option::of(json_leaf()),
            facts in agent_facts(),
        ) {
            let mut args = serde_json::Map::new();
            if let Some(a) = a { args.insert("a".into(), a); }
            if let Some(b) = b { args.insert("b".into(), b); }
            if let Some(xs) = xs { args.insert("xs".into(), serde_json::Value::Array(xs)); }
            if let Some(m) = m { args.insert("m".into(), m); }
            let action = action(serde_json::Value::Object(args));
            let (fast, interp) = both_with(&src, &action, facts);
            let fast = fast.expect("generated expressions are inside the subset");
            prop_assert_eq!(fast, interp, "{}", src);
        }

        #[test]
        fn native_comprehensions_agree_with_interpreter(
            src in comp(),
            a in prop::option::of(json_leaf()),
            xs in prop::option::of(prop::collection::vec(json_leaf(), 0..4)),
            m in prop::option::of(json_leaf()),
        ) {
            let mut args = serde_json::Map::new();
            if let Some(a) = a { args.insert("a".into(), a); }
            if let Some(xs) = xs { args.insert("xs".into(), serde_json::Value::Array(xs)); }
            if let Some(m) = m { args.insert("m".into(), m); }
            let action = action(serde_json::Value::Object(args));
            let (fast, interp) = both(&src, &action);
            let fast = fast.expect("generated comprehensions are inside the subset");
            prop_assert_eq!(fast, interp, "{}", src);
        }
    }
}
