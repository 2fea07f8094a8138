//! Links the `hark` executable position-dependent (`-no-pie`): a PIE's pointers in
//! read-only data (vtables, string tables, about 1.4 MiB here) are relocated at every
//! start, which copies those pages into private, anonymous memory; a fixed-address
//! executable maps them from the file, shared and clean. The idle footprint is a target
//! (docs/benchmarks.md). The objects stay position-independent; only the final link
//! changes, and only for the binaries of this package.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
