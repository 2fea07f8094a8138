//! Any text as a configuration file: parsed and checked, an error list or a config,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hark::config::Config::from_text(std::path::Path::new("/fuzz/hark.toml"), text);
    }
});
