//! Evaluating a rule's CEL condition on an event's fields.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Map, Value};

/// Converts an event's fields once, for every rule that looks at it.
pub fn cel_fields(fields: &Map<String, Value>) -> Vec<(String, cel::Value)> {
    fields.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect()
}

/// JSON to CEL: whole numbers are `int` (a `uint` only past `int`'s range), fractions
/// `double`; CEL compares the two as a user expects.
pub fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                cel::Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                cel::Value::UInt(u)
            } else {
                cel::Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(a) => cel::Value::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<String, cel::Value> =
                o.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

/// What a condition said about one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Match,
    NoMatch,
    /// It could not be evaluated (a field the event lacks, a type mismatch): treated as
    /// no match, and the reason logged once per rule.
    Error(String),
}

/// Shares the CEL standard environment between every evaluation.
pub struct Evaluator {
    env: Arc<cel::Env>,
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator {
            env: Arc::new(cel::Env::stdlib()),
        }
    }
}

impl Evaluator {
    pub fn eval(&self, program: &cel::Program, fields: &[(String, cel::Value)]) -> Outcome {
        let mut ctx = cel::Context::with_env(Arc::clone(&self.env));
        for (k, v) in fields {
            ctx.add_variable_from_value(k.clone(), v.clone());
        }
        match program.execute(&ctx) {
            Ok(cel::Value::Bool(true)) => Outcome::Match,
            Ok(cel::Value::Bool(false)) => Outcome::NoMatch,
            Ok(other) => Outcome::Error(format!(
                "the condition gave {} instead of a bool",
                other.type_of()
            )),
            Err(cel::ExecutionError::UndeclaredReference(name)) => {
                Outcome::Error(format!("the event has no field `{name}`"))
            }
            Err(e) => Outcome::Error(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn eval(expr: &str, fields: Value) -> Outcome {
        let program = cel::Program::compile(expr).unwrap();
        let Value::Object(map) = fields else { panic!() };
        Evaluator::default().eval(&program, &cel_fields(&map))
    }

    #[test]
    fn int_and_double_compare_as_users_expect() {
        assert_eq!(
            eval("cpu_percent > 80", json!({"cpu_percent": 80.5})),
            Outcome::Match
        );
        assert_eq!(eval("size > 0.5", json!({"size": 1})), Outcome::Match);
        assert_eq!(eval("size == 1.0", json!({"size": 1})), Outcome::Match);
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_crash() {
        match eval("status == 200", json!({"kind": "modify"})) {
            Outcome::Error(m) => assert!(m.contains("status"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn string_functions_work_on_paths() {
        let f = json!({"path": "/etc/nginx/a.conf", "kind": "modify"});
        assert_eq!(
            eval("path.endsWith('.conf') && kind == 'modify'", f),
            Outcome::Match
        );
    }

    #[test]
    fn a_non_bool_result_is_an_error() {
        assert!(matches!(
            eval("size + 1", json!({"size": 1})),
            Outcome::Error(_)
        ));
    }

    proptest! {
        // Whatever a field holds, evaluating never panics.
        #[test]
        fn arbitrary_strings_and_numbers_never_panic(s in "\\PC*", n in any::<i64>(), f in any::<f64>()) {
            let fields = json!({"path": s, "size": n, "ratio": f});
            let _ = eval("path.contains('x') || size > 3 || ratio < 1.5", fields);
        }
    }
}
