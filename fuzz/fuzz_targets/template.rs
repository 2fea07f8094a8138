//! A template (before the first NUL byte) rendered with a context (the JSON after it) in
//! hark's template environment: text or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (source, ctx) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(source) = std::str::from_utf8(source) else { return };
    let ctx: serde_json::Value = serde_json::from_slice(ctx).unwrap_or_default();
    let env = hark::config::template_env();
    let _ = env.render_str(source, minijinja::Value::from(minijinja::value::Serde(&ctx)));
});
