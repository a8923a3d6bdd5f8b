//! CEL conditions: compiled once, statically costed, evaluated over an action.
//!
//! The `cel` crate has no step counter, so the evaluation bound is static:
//! at load time each program's size and comprehension nesting depth are
//! measured; at run time a program whose worst case
//! `nodes × (input_nodes + 1)^depth` exceeds the budget is not run and the
//! decision is a deny with `runtime_error:budget_exceeded`. Everything a CEL
//! program can iterate over comes from the action or from literals in the
//! program, and the environment has no list generators, so this bounds the
//! work of every evaluation.

use crate::facts::{AGENT_KEYS, AgentFacts};
use crate::fast::Fast;
use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use cel::common::types::CelString;
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::{Context, Env, Program, Value};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use warden_core::Action;

/// The variables a condition may use.
pub const VARIABLES: [&str; 6] = ["point", "tool", "args", "agent", "session", "context"];

/// Function namespaces of the enabled extensions.
const NAMESPACES: [&str; 2] = ["math", "strings"];

/// CEL's type names, usable as values (`type(x) == int`).
const TYPE_NAMES: [&str; 11] = [
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// Longest condition source accepted.
pub const MAX_CONDITION_BYTES: usize = 16 * 1024;
/// Deepest comprehension nesting accepted (`all`/`exists`/`map`/`filter` inside each other).
pub const MAX_COMPREHENSION_DEPTH: u32 = 3;
/// Deepest expression nesting accepted, so hostile input cannot overflow the stack.
pub const MAX_EXPRESSION_DEPTH: usize = 128;

/// Compiles a regex literal once per process: identical patterns across rules
/// and reloads share one compiled program (load time only, never per call).
pub(crate) fn regex(pattern: &str) -> Result<Arc<regex::Regex>, String> {
    static CACHE: std::sync::Mutex<Option<HashMap<String, Arc<regex::Regex>>>> =
        std::sync::Mutex::new(None);
    let mut guard = CACHE
        .lock()
        .map_err(|_| "regex cache poisoned".to_owned())?;
    let cache = guard.get_or_insert_with(HashMap::new);
    if let Some(re) = cache.get(pattern) {
        return Ok(Arc::clone(re));
    }
    let re = Arc::new(regex::Regex::new(pattern).map_err(|e| {
        format!(
            "invalid regex `{pattern}` in matches(): {}",
            one_line(&e.to_string())
        )
    })?);
    if cache.len() >= 10_000 {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), Arc::clone(&re));
    Ok(re)
}

/// The shared CEL environment: the standard library plus string and math extensions.
pub(crate) fn environment() -> Result<Arc<Env>, String> {
    let mut env = Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .map_err(|e| e.to_string())?;
    env.add_extension(cel::extensions::math)
        .map_err(|e| e.to_string())?;
    Ok(Arc::new(env))
}

/// A compiled condition.
#[derive(Debug)]
pub struct Condition {
    program: Program,
    /// The source as written.
    pub source: String,
    /// Number of AST nodes.
    nodes: u64,
    /// Comprehension nesting depth.
    depth: u32,
    /// Whether the result is a literal `false` (lint: rule can never match).
    pub(crate) constant_false: bool,
    /// Native evaluator when the condition is inside the fast subset.
    fast: Option<Fast>,
    /// Whether it reads `agent.trust`, `agent.tier` or `agent.ring` (or the whole `agent` map).
    pub(crate) uses_facts: bool,
}

impl Condition {
    /// Compiles `source` with `env`, rejecting unknown variables, oversized or
    /// too deeply nested expressions.
    pub(crate) fn compile(env: &Env, source: &str) -> Result<Condition, String> {
        if source.len() > MAX_CONDITION_BYTES {
            return Err(format!(
                "condition is {} bytes; the limit is {MAX_CONDITION_BYTES}",
                source.len()
            ));
        }
        if source.trim().is_empty() {
            return Err("condition is empty".to_owned());
        }
        // The parser recurses per nesting level: refuse pathological nesting before parsing.
        let mut open = 0usize;
        for c in source.chars() {
            match c {
                '(' | '[' | '{' => {
                    open += 1;
                    if open > MAX_EXPRESSION_DEPTH {
                        return Err(format!(
                            "condition nests deeper than {MAX_EXPRESSION_DEPTH} levels"
                        ));
                    }
                }
                ')' | ']' | '}' => open = open.saturating_sub(1),
                _ => {}
            }
        }
        let program = env.compile(source).map_err(|e| match e.errors.first() {
            // One error is enough; the crate's Display repeats the source per error.
            Some(first) => format!(
                "CEL does not compile at column {}: {}",
                first.pos.1.saturating_add(1),
                one_line(&first.msg)
            ),
            None => format!("CEL does not compile: {}", one_line(&e.to_string())),
        })?;
        let mut walk = Walk::default();
        walk.visit(program.expression(), 0, &mut Vec::new())?;
        if walk.depth > MAX_COMPREHENSION_DEPTH {
            return Err(format!(
                "comprehensions nest {} deep; the limit is {MAX_COMPREHENSION_DEPTH}",
                walk.depth
            ));
        }
        if let Some(v) = walk.unknown {
            return Err(format!(
                "unknown variable `{v}` (conditions may use: {})",
                VARIABLES.join(", ")
            ));
        }
        let constant_false = matches!(
            &program.expression().expr,
            Expr::Literal(cel::common::ast::LiteralValue::Boolean(b)) if !*b.inner()
        );
        let fast = Fast::compile(program.expression())?;
        Ok(Condition {
            fast,
            uses_facts: walk.facts,
            program,
            source: source.to_owned(),
            nodes: walk.nodes,
            depth: walk.depth,
            constant_false,
        })
    }

    /// Worst-case evaluation cost for an input of `input_nodes` JSON nodes.
    pub(crate) fn cost(&self, input_nodes: u64) -> u64 {
        let mut cost = self.nodes;
        for _ in 0..self.depth {
            cost = cost.saturating_mul(input_nodes.saturating_add(1));
        }
        cost
    }

    /// Whether the cost depends on the input at all.
    pub(crate) fn iterates(&self) -> bool {
        self.depth > 0
    }

    /// The native evaluator, if the condition is inside the fast subset.
    pub(crate) fn fast(&self) -> Option<&Fast> {
        self.fast.as_ref()
    }

    /// Runs the condition on the interpreter. `Ok(bool)` or an error message.
    pub(crate) fn eval(&self, ctx: &Context<'_, '_>) -> Result<bool, String> {
        match self.program.execute(ctx) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition returned {} instead of a bool",
                other.type_of()
            )),
            Err(e) => Err(one_line(&e.to_string())),
        }
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// AST statistics gathered at load time.
#[derive(Default)]
struct Walk {
    nodes: u64,
    depth: u32,
    unknown: Option<String>,
    /// Reads an agent fact (or `agent` as a whole).
    facts: bool,
}

/// `agent.<key>` must name a key `agent` has: a typo is a load error, not a
/// run-time `no such key` that fails every decision closed.
fn agent_key(key: &str) -> Result<bool, String> {
    if AGENT_KEYS.contains(&key) {
        Ok(key != "id")
    } else {
        Err(format!(
            "unknown key `agent.{key}` (agent has: {})",
            AGENT_KEYS.join(", ")
        ))
    }
}

/// Whether `e` is the variable `agent` (not a comprehension variable of that name).
fn is_agent(e: &IdedExpr, bound: &[String]) -> bool {
    matches!(&e.expr, Expr::Ident(n) if n == "agent" && !bound.iter().any(|b| b == n))
}

impl Walk {
    fn visit(&mut self, e: &IdedExpr, level: u32, bound: &mut Vec<String>) -> Result<(), String> {
        self.nodes += 1;
        if bound.len() > MAX_EXPRESSION_DEPTH * 4 {
            return Err("condition is nested too deeply".to_owned());
        }
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => {}
            Expr::Ident(name) => {
                let known = name.starts_with('@')
                    || VARIABLES.contains(&name.as_str())
                    || TYPE_NAMES.contains(&name.as_str())
                    || bound.iter().any(|b| b == name);
                if !known && self.unknown.is_none() {
                    self.unknown = Some(name.clone());
                }
                // `agent` used whole (`agent == {...}`, `agent[k]`): assume it reads the facts.
                if name == "agent" && !bound.iter().any(|b| b == name) {
                    self.facts = true;
                }
            }
            Expr::Select(s) if is_agent(&s.operand, bound) => {
                // The selection and the `agent` identifier.
                self.nodes += 2;
                self.facts |= agent_key(&s.field)?;
            }
            Expr::Call(call)
                if call.func_name == cel::common::ast::operators::INDEX
                    && call.target.is_none()
                    && call.args.len() == 2
                    && is_agent(&call.args[0], bound) =>
            {
                if let Expr::Literal(cel::common::ast::LiteralValue::String(k)) = &call.args[1].expr
                {
                    agent_key(k.inner())?;
                }
                self.visit(&call.args[0], level, bound)?;
                self.visit(&call.args[1], level, bound)?;
            }
            Expr::Call(call) => {
                match call.func_name.as_str() {
                    "timestamp" | "duration" => {
                        return Err(format!(
                            "`{}()` is not available in Warden conditions (no time types); pass times as numbers in `context`",
                            call.func_name
                        ));
                    }
                    "matches" => {
                        // A literal pattern is compiled now, whichever evaluator runs it.
                        let pattern = match (&call.target, call.args.as_slice()) {
                            (Some(_), [p]) | (None, [_, p]) => Some(p),
                            _ => None,
                        };
                        if let Some(IdedExpr {
                            expr: Expr::Literal(cel::common::ast::LiteralValue::String(p)),
                            ..
                        }) = pattern
                        {
                            regex(p.inner())?;
                        }
                    }
                    _ => {}
                }
                match call.target.as_deref() {
                    // `math.ceil(x)`, `strings.quote(s)`: a namespace, not a variable.
                    Some(IdedExpr {
                        expr: Expr::Ident(ns),
                        ..
                    }) if NAMESPACES.contains(&ns.as_str()) => {}
                    Some(t) => self.visit(t, level, bound)?,
                    None => {}
                }
                for a in &call.args {
                    self.visit(a, level, bound)?;
                }
            }
            Expr::Select(s) => self.visit(&s.operand, level, bound)?,
            Expr::List(l) => {
                for el in &l.elements {
                    self.visit(el, level, bound)?;
                }
            }
            Expr::Map(m) => {
                for entry in &m.entries {
                    match &entry.expr {
                        EntryExpr::StructField(f) => self.visit(&f.value, level, bound)?,
                        EntryExpr::MapEntry(me) => {
                            self.visit(&me.key, level, bound)?;
                            self.visit(&me.value, level, bound)?;
                        }
                    }
                }
            }
            Expr::Struct(s) => {
                for entry in &s.entries {
                    if let EntryExpr::StructField(f) = &entry.expr {
                        self.visit(&f.value, level, bound)?;
                    }
                }
            }
            Expr::Comprehension(c) => {
                self.visit(&c.iter_range, level, bound)?;
                self.visit(&c.accu_init, level, bound)?;
                let inner = level + 1;
                self.depth = self.depth.max(inner);
                let pushed = 2 + usize::from(c.iter_var2.is_some());
                bound.push(c.iter_var.clone());
                bound.push(c.accu_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    bound.push(v2.clone());
                }
                self.visit(&c.loop_cond, inner, bound)?;
                self.visit(&c.loop_step, inner, bound)?;
                self.visit(&c.result, inner, bound)?;
                bound.truncate(bound.len() - pushed);
            }
        }
        Ok(())
    }
}

/// Counts the JSON nodes of a value (for the cost bound).
pub(crate) fn json_nodes(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Array(a) => 1 + a.iter().map(json_nodes).sum::<u64>(),
        serde_json::Value::Object(o) => 1 + o.values().map(json_nodes).sum::<u64>(),
        serde_json::Value::String(s) => 1 + s.len() as u64 / 64,
        _ => 1,
    }
}

/// The variables of one action, converted on first use only.
///
/// `tool` and `point` are handed out borrowed; `args`, `context`, `agent`
/// and `session` are converted to CEL values the first time a condition
/// reads them and reused by every later condition of the same decision.
pub(crate) struct ActionVars<'a> {
    action: &'a Action,
    facts: &'a AgentFacts,
    args: OnceLock<Option<Box<dyn Val>>>,
    context: OnceLock<Option<Box<dyn Val>>>,
    agent: OnceLock<Option<Box<dyn Val>>>,
    session: OnceLock<Option<Box<dyn Val>>>,
}

fn to_val(value: Value) -> Option<Box<dyn Val>> {
    value.try_into().ok()
}

/// Deepest JSON nesting a condition will look at; deeper input is an invalid action.
pub const MAX_INPUT_DEPTH: usize = 64;

/// Whether `v` nests no deeper than `limit` (recursion bounded by `limit`).
pub(crate) fn within_depth(v: &serde_json::Value, limit: usize) -> bool {
    match v {
        serde_json::Value::Array(a) => limit > 0 && a.iter().all(|x| within_depth(x, limit - 1)),
        serde_json::Value::Object(o) => limit > 0 && o.values().all(|x| within_depth(x, limit - 1)),
        _ => true,
    }
}

/// JSON → CEL with JSON's number model: integers that fit `int` are `int`
/// (so `args.n + 1` and `args.n > 5` just work), larger ones `uint`, the rest `double`.
pub(crate) fn json_to_cel(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Value::Int(i),
            (None, Some(u)) => Value::UInt(u),
            _ => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        serde_json::Value::Object(o) => json_map_to_cel(o),
    }
}

fn json_map_to_cel(o: &serde_json::Map<String, serde_json::Value>) -> Value {
    let m: HashMap<String, Value> = o.iter().map(|(k, v)| (k.clone(), json_to_cel(v))).collect();
    Value::from(m)
}

fn json_map_val(map: &serde_json::Map<String, serde_json::Value>) -> Option<Box<dyn Val>> {
    to_val(json_map_to_cel(map))
}

/// `agent`: its id and the kernel's facts.
fn agent_map(id: &str, facts: &AgentFacts) -> Option<Box<dyn Val>> {
    let mut m: HashMap<String, Value> = HashMap::with_capacity(AGENT_KEYS.len());
    m.insert("id".to_owned(), Value::from(id.to_owned()));
    m.insert("trust".to_owned(), Value::Int(i64::from(facts.trust())));
    m.insert("tier".to_owned(), Value::from(facts.tier()));
    m.insert("ring".to_owned(), Value::Int(i64::from(facts.ring().get())));
    to_val(Value::from(m))
}

fn id_map(id: Option<&str>) -> Option<Box<dyn Val>> {
    let mut m: HashMap<String, Value> = HashMap::with_capacity(1);
    if let Some(id) = id {
        m.insert("id".to_owned(), Value::from(id.to_owned()));
    }
    to_val(Value::from(m))
}

impl<'a> ActionVars<'a> {
    pub(crate) fn new(action: &'a Action, facts: &'a AgentFacts) -> Self {
        ActionVars {
            action,
            facts,
            args: OnceLock::new(),
            context: OnceLock::new(),
            agent: OnceLock::new(),
            session: OnceLock::new(),
        }
    }
}

impl VariableResolver for ActionVars<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let cached = match variable {
            "tool" => {
                return Some(CowVal::owned(CelString::from(
                    self.action.tool().unwrap_or(""),
                )));
            }
            "point" => return Some(CowVal::owned(CelString::from(self.action.point.as_str()))),
            "args" => self.args.get_or_init(|| json_map_val(&self.action.args)),
            "context" => self
                .context
                .get_or_init(|| json_map_val(&self.action.context)),
            "agent" => self
                .agent
                .get_or_init(|| agent_map(&self.action.agent, self.facts)),
            "session" => self
                .session
                .get_or_init(|| id_map(self.action.session.as_deref())),
            _ => return None,
        };
        cached.as_deref().map(CowVal::from)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn env() -> Arc<Env> {
        environment().unwrap()
    }

    fn eval(src: &str, action: &Action) -> Result<bool, String> {
        let env = env();
        let c = Condition::compile(&env, src)?;
        let facts = AgentFacts::BASELINE;
        let vars = ActionVars::new(action, &facts);
        let mut ctx = Context::with_env(env);
        ctx.set_variable_resolver(&vars);
        c.eval(&ctx)
    }

    fn action(args: serde_json::Value) -> Action {
        Action::tool_call("bot", "sql.query")
            .unwrap()
            .with_session("s1")
            .with_args(args.as_object().unwrap().clone())
    }

    #[test]
    fn variables_resolve() {
        let a = action(serde_json::json!({"q": "DROP table x", "n": 5, "tags": ["a", "b"]}));
        assert_eq!(eval("tool == 'sql.query'", &a), Ok(true));
        assert_eq!(eval("point == 'pre_tool_call'", &a), Ok(true));
        assert_eq!(
            eval("agent.id == 'bot' && session.id == 's1'", &a),
            Ok(true)
        );
        assert_eq!(eval("args.q.matches('(?i)drop\\\\s+table')", &a), Ok(true));
        assert_eq!(eval("args.n > 3 && 'b' in args.tags", &a), Ok(true));
        assert_eq!(eval("args.tags.exists(t, t == 'a')", &a), Ok(true));
        assert_eq!(eval("args.q.lowerAscii().contains('drop')", &a), Ok(true));
        assert_eq!(eval("has(args.missing)", &a), Ok(false));
    }

    #[test]
    fn errors_are_errors() {
        let a = action(serde_json::json!({"n": 5}));
        assert!(eval("args.missing == 1", &a).is_err());
        assert!(eval("args.n == 'x' || args.n.startsWith('x')", &a).is_err());
        assert!(
            eval("args.n", &a)
                .unwrap_err()
                .contains("instead of a bool")
        );
        assert!(eval("session.id == 'x'", &Action::tool_call("a", "t").unwrap()).is_err());
    }

    #[test]
    fn load_time_rejections() {
        let env = env();
        assert!(
            Condition::compile(&env, "argz.x == 1")
                .unwrap_err()
                .contains("unknown variable `argz`")
        );
        assert!(
            Condition::compile(&env, "args.x ==")
                .unwrap_err()
                .contains("does not compile")
        );
        assert!(Condition::compile(&env, "").is_err());
        let deep = format!("{}true{}", "(".repeat(500), ")".repeat(500));
        assert!(
            Condition::compile(&env, &deep)
                .unwrap_err()
                .contains("nests deeper")
        );
        let long = format!("tool == '{}'", "x".repeat(MAX_CONDITION_BYTES));
        assert!(Condition::compile(&env, &long).is_err());
        let nested = "args.a.exists(x, args.a.exists(y, args.a.exists(z, args.a.exists(w, true))))";
        assert!(
            Condition::compile(&env, nested)
                .unwrap_err()
                .contains("nest 4 deep")
        );
        // Comprehension variables are in scope only inside their comprehension.
        assert!(Condition::compile(&env, "args.a.exists(x, x > 1) && x > 1").is_err());
        assert!(Condition::compile(&env, "args.a.exists(x, x > 1)").is_ok());
    }

    #[test]
    fn agent_keys_are_checked_at_load() {
        let env = env();
        for bad in [
            "agent.trsut >= 700",
            "has(agent.score)",
            "agent['tierz'] == 'x'",
            "tool == 'x' && agent.rings == 1",
        ] {
            let e = Condition::compile(&env, bad).unwrap_err();
            assert!(e.contains("unknown key `agent."), "{bad}: {e}");
            assert!(e.contains("id, trust, tier, ring"), "{e}");
        }
        let uses = |src: &str| Condition::compile(&env, src).unwrap().uses_facts;
        assert!(!uses("agent.id == 'x' && tool == 'y'"));
        assert!(!uses("args.xs.exists(agent, agent.trsut > 1)"));
        assert!(uses("agent.trust >= 700"));
        assert!(uses("agent.tier == 'trusted'"));
        assert!(uses("agent.ring <= 1"));
        assert!(uses("agent == {'id': 'x'}"));
        assert!(uses("agent[args.k] == 1"));
        let a = action(serde_json::json!({}));
        assert_eq!(
            eval(
                "agent.trust == 400 && agent.tier == 'probationary' && agent.ring == 3",
                &a
            ),
            Ok(true)
        );
        assert_eq!(eval("agent.id == 'bot' && size(agent) == 4", &a), Ok(true));
    }

    #[test]
    fn cost_grows_with_depth() {
        let env = env();
        let flat = Condition::compile(&env, "tool == 'x'").unwrap();
        assert!(!flat.iterates());
        assert_eq!(flat.cost(1_000_000), flat.cost(0));
        let two = Condition::compile(&env, "args.a.exists(x, args.a.exists(y, x == y))").unwrap();
        assert!(two.cost(1000) > 1000 * 1000);
    }
}
