//! Python objects ⇄ JSON values, walked directly (no `json.dumps` round trip).
//!
//! Only the JSON data model converts: `str`, `int` (64-bit), finite `float`,
//! `bool`, `None`, `dict` with `str` keys, `list`/`tuple`. Anything else is an
//! error naming the type: the binding never guesses a representation (the
//! Python `govern()` layer documents its own `str()` fallback).

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use serde_json::{Map, Number, Value};

/// Nesting accepted from Python; deeper input (or a cycle) is rejected. The
/// kernel itself looks at most 64 levels deep and denies deeper actions.
const MAX_DEPTH: usize = 128;

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

/// Converts a Python object into a JSON value.
pub(crate) fn from_py(obj: &Bound<'_, PyAny>) -> Result<Value, String> {
    walk(obj, 0)
}

fn walk(obj: &Bound<'_, PyAny>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "nested deeper than {MAX_DEPTH} levels (or self-referencing)"
        ));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return s
            .to_str()
            .map(|s| Value::String(s.to_owned()))
            .map_err(|e| format!("string is not valid Unicode: {e}"));
    }
    if obj.is_none() {
        return Ok(Value::Null);
    }
    // bool before int: `bool` is a subclass of `int`.
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(i) = obj.cast::<PyInt>() {
        if let Ok(v) = i.extract::<i64>() {
            return Ok(Value::Number(v.into()));
        }
        if let Ok(v) = i.extract::<u64>() {
            return Ok(Value::Number(v.into()));
        }
        return Err("integer does not fit in 64 bits".to_owned());
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Number::from_f64(f.value())
            .map(Value::Number)
            .ok_or_else(|| "NaN and infinite floats are not JSON".to_owned());
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        let mut map = Map::new();
        for (k, v) in d.iter() {
            let key = k
                .cast::<PyString>()
                .map_err(|_| format!("dict keys must be strings, found `{}`", type_name(&k)))?;
            let key = key
                .to_str()
                .map_err(|e| format!("dict key is not valid Unicode: {e}"))?;
            map.insert(key.to_owned(), walk(&v, depth + 1)?);
        }
        return Ok(Value::Object(map));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        let mut out = Vec::with_capacity(l.len());
        for v in l.iter() {
            out.push(walk(&v, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        let mut out = Vec::with_capacity(t.len());
        for v in t.iter() {
            out.push(walk(&v, depth + 1)?);
        }
        return Ok(Value::Array(out));
    }
    Err(format!(
        "a value of type `{}` is not JSON (use str, int, float, bool, None, dict, list)",
        type_name(obj)
    ))
}

/// Converts a JSON value into Python objects.
pub(crate) fn to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::Null => py.None().into_bound(py),
        Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any()
            }
        }
        Value::String(s) => PyString::new(py, s).into_any(),
        Value::Array(a) => {
            let list = PyList::empty(py);
            for x in a {
                list.append(to_py(py, x)?)?;
            }
            list.into_any()
        }
        Value::Object(m) => {
            let dict = PyDict::new(py);
            for (k, x) in m {
                dict.set_item(k, to_py(py, x)?)?;
            }
            dict.into_any()
        }
    })
}
