//! Links the `hark` executable position-dependent (`-no-pie`): a PIE's pointers in
//! read-only data (vtables, string tables, about 1.4 MiB here) are relocated at every
//! start, which copies those pages into private, anonymous memory; a fixed-address
//! executable maps them from the file, shared and clean. The idle footprint is a target
//! (docs/benchmarks.md). The objects stay position-independent; only the final link
//! changes, and only for the binaries of this package.
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        order_idle_code();
    }
    println!("cargo:rerun-if-changed=build.rs");
}

/// Places the functions an idle daemon runs next to each other (the list is made by
/// `bench/idle_code.py`): the kernel maps an executable's code 64 KiB around each page
/// it faults in, so a few hundred small functions spread over 8 MiB of code kept about 4
/// MiB mapped; packed, they fill a few of those windows. Needs LLD (Rust's own, which it
/// links with by default on x86-64 Linux since 1.90); without it the order is left as it
/// is, and a warning says so.
fn order_idle_code() {
    let Ok(dir) = std::env::var("CARGO_MANIFEST_DIR") else {
        return;
    };
    let order = std::path::Path::new(&dir).join("bench/idle-code.order");
    println!("cargo:rerun-if-changed={}", order.display());
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let sysroot = std::process::Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string());
    let (Some(sysroot), Ok(target)) = (sysroot, std::env::var("TARGET")) else {
        return;
    };
    let gcc_ld = std::path::Path::new(&sysroot)
        .join("lib/rustlib")
        .join(target)
        .join("bin/gcc-ld");
    if !gcc_ld.join("ld.lld").exists() || !order.exists() {
        println!("cargo:warning=idle code not packed (no LLD in the Rust toolchain, or no bench/idle-code.order): an idle hark maps more of its executable");
        return;
    }
    println!("cargo:rustc-link-arg-bins=-B{}", gcc_ld.display());
    println!("cargo:rustc-link-arg-bins=-fuse-ld=lld");
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    // Functions renamed or gone since the list was made are skipped without a word.
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}
