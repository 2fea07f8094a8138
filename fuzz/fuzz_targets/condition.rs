//! A CEL condition (before the first NUL byte) compiled and evaluated against an event
//! (the JSON after it), as rules do: an outcome, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (cond, event) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(cond) = std::str::from_utf8(cond) else { return };
    let Ok(program) = cel::Program::compile(cond) else { return };
    let fields = match serde_json::from_slice::<serde_json::Value>(event) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let _ = hark::rule::Evaluator::default().eval(&program, &hark::rule::cel_fields(&fields));
});
