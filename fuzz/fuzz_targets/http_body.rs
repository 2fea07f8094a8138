//! What an HTTP target answers, turned into event fields and CEL values as a check does,
//! and read as a certificate: fields, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut fields = serde_json::Map::new();
    hark::watch::http::body_fields(data, false, &mut fields);
    let _ = hark::rule::cel_fields(&fields);
    let _ = hark::watch::http::cert_expiry_days(data);
});
