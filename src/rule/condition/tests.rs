use super::*;
use proptest::prelude::*;
use serde_json::json;

fn eval(expr: &str, fields: Value) -> Outcome {
    let program = crate::config::cel_env().compile(expr).unwrap();
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
fn explain_gives_each_sub_expression_as_written_with_its_value() {
    let program = cel::Program::compile("cpu_percent > 80 && name.startsWith('ng')").unwrap();
    let fields = json!({"cpu_percent": 93, "name": "nginx"});
    let Value::Object(map) = fields else { panic!() };
    let subs = Evaluator::default().explain(&program, &cel_fields(&map));
    let pairs: Vec<(&str, &str)> = subs
        .iter()
        .map(|s| (s.expr.as_str(), s.value.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("cpu_percent > 80 && name.startsWith('ng')", "true"),
            ("cpu_percent > 80", "true"),
            ("cpu_percent", "93"),
            ("name.startsWith('ng')", "true"),
            ("name", "\"nginx\""),
        ]
    );
}

#[test]
fn explain_keeps_brackets_and_shows_macros_whole() {
    let program =
        cel::Program::compile("(size(path) > 3) && [1, 2].exists(v, v > n) && m['a'] == 'x(y'")
            .unwrap();
    let fields = json!({"path": "/etc/x", "n": 1, "m": {"a": "x(y"}});
    let Value::Object(map) = fields else { panic!() };
    let subs = Evaluator::default().explain(&program, &cel_fields(&map));
    let exprs: Vec<&str> = subs.iter().map(|s| s.expr.as_str()).collect();
    assert!(exprs.contains(&"size(path) > 3"), "{exprs:?}");
    assert!(exprs.contains(&"size(path)"), "{exprs:?}");
    assert!(exprs.contains(&"m['a']"), "{exprs:?}");
    assert!(exprs.contains(&"[1, 2].exists(v, v > n)"), "{exprs:?}");
    assert!(
        !exprs.contains(&"v"),
        "a loop variable is not shown: {exprs:?}"
    );
    assert_eq!(subs[0].value, "true", "{subs:?}");
}

#[test]
fn explain_names_a_json_field_by_its_path_and_shows_objects_as_json() {
    let program = cel::Program::compile("json.status == 'up' && json.checks . db == 1").unwrap();
    let fields = json!({"json": {"status": "up", "checks": {"db": 1}}});
    let Value::Object(map) = fields else { panic!() };
    let subs = Evaluator::default().explain(&program, &cel_fields(&map));
    let shown: Vec<(&str, &str)> = subs
        .iter()
        .map(|s| (s.expr.as_str(), s.value.as_str()))
        .collect();
    assert!(shown.contains(&("json.status", "\"up\"")), "{shown:?}");
    assert!(shown.contains(&("json.checks . db", "1")), "{shown:?}");
    let json_value = shown.iter().find(|(e, _)| *e == "json").unwrap().1;
    let parsed: Value = serde_json::from_str(json_value).unwrap();
    assert_eq!(parsed, json!({"status": "up", "checks": {"db": 1}}));
    assert!(subs.iter().all(|s| !s.value.contains("Map(")), "{shown:?}");
}

#[test]
fn explain_says_which_field_is_missing() {
    let program = cel::Program::compile("status == 200").unwrap();
    let subs = Evaluator::default().explain(&program, &[]);
    assert!(subs[0].value.contains("no field `status`"), "{subs:?}");
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

    // Whatever condition compiles, explaining it never panics and starts with the whole.
    #[test]
    fn explaining_any_condition_never_panics(src in "[a-z0-9 ()\\[\\]'\"<>=!&|.,+*-]{1,40}") {
        if let Ok(program) = cel::Program::compile(&src) {
            let subs = Evaluator::default().explain(&program, &cel_fields(&serde_json::Map::new()));
            for s in subs {
                prop_assert!(!s.expr.is_empty());
            }
        }
    }
}
