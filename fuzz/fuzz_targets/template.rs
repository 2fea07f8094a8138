//! A template (before the first NUL byte) rendered with a context (the JSON after it) in
//! hark's template environment, with its budget: text or an error, never a panic, and
//! never unbounded work or output (loops of loops, `"x" * n`).
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
    let started = std::time::Instant::now();
    if let Ok(out) = env.render_str(source, minijinja::Value::from(minijinja::value::Serde(&ctx))) {
        // The budget bounds the data a render makes to about 64 bytes a unit.
        assert!(out.len() as u64 <= hark::config::TEMPLATE_FUEL * 64 + 4096, "{} bytes", out.len());
    }
    // A render's work is bounded by its fuel; seconds would mean it is not.
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "{:?}", started.elapsed());
});
