//! A CEL condition (before the first NUL byte) compiled and checked as `validate` does,
//! then evaluated against an event (the JSON after it), as rules do, and explained
//! sub-expression by sub-expression, as `hark explain` does: an outcome, never a panic
//! nor a stack overflow (what validate accepts must run on any thread).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cond, event) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(cond) = std::str::from_utf8(cond) else { return };
    let Ok(program) = hark::config::compile_condition(cond) else { return };
    let fields = match serde_json::from_slice::<serde_json::Value>(event) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let evaluator = hark::rule::Evaluator::default();
    let fields = hark::rule::cel_fields(&fields);
    let _ = evaluator.eval(&program, &fields);
    let _ = evaluator.explain(&program, &fields);
});
