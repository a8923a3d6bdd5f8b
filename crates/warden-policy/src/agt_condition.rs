//! temporary probe
#![allow(missing_docs, dead_code)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AgtConditionError {
    #[error("x")]
    X,
}
pub(crate) fn translate(_c: &str) -> Result<String, AgtConditionError> {
    Err(AgtConditionError::X)
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;
    fn run(src: &str, ctx: serde_json::Value) -> String {
        let p = match cel::Program::compile(src) { Ok(p) => p, Err(e) => return format!("PARSE ERR {e}") };
        let mut c = cel::Context::default();
        c.add_variable_from_value("context", cel::to_value(&ctx).unwrap());
        format!("{:?}", p.execute(&c))
    }
    #[test]
    fn agt_condition_probe() {
        let ctx = serde_json::json!({"u": 5, "i": -3, "f": 2.5, "s": "42", "b": true, "n": null, "l": [1], "m": {"a-b": 1}, "e": ""});
        let _ = HashMap::<i32,i32>::new();
        for src in [
            "context.u", "context.i", "context.f", "context.n",
            "context.u > 3", "context.u > 3.0", "context.f > 2", "context.u == 5", "context.u == 5.0", "context.i < 0u",
            "context.s == 5", "context.s > 5", "context.missing == 1",
            "type(context.u) == uint", "type(context.i) == int", "type(context.f) == double", "type(context.n) == null_type",
            "type(context.m) == map", "type(context.l) == list", "type(context.s) == string", "type(context.b) == bool",
            "double(context.s)", "double('1e3')", "double(' 4')", "double('inf')", "double(context.u)",
            "'a-b' in context.m", "'x' in context.s", "context.m['a-b']", "has(context.m.x)",
            "\"\\u0028a\\u005b\" == '(a['", "'\\x28'", "'\\n\\t\\\\\\\"'", "'é😀' == \"\\u00e9\\U0001F600\"",
            "1e300", "1.5e-7", "-5", "-9223372036854775807 - 1", "5u", "!!true", "!(!true)",
            "context.s.matches('^[0-9]+$')", "size(context.e) > 0", "size(context.m)",
            "true ? 1 : false ? 2 : 3", "context.n == null",
            "18446744073709551615u", "double(18446744073709551615u)",
            "context['in']", "{'in': 1}.in",
        ] {
            println!("{src:60} => {}", run(src, ctx.clone()));
        }
    }
}
