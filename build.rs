//! Links the `rust_claw` executable as a position-dependent (non-PIE) binary on Linux.
//!
//! Why: every admin verb is a fresh process, and a PIE has to be relocated at each
//! start. This binary carries about 1.2 MB of relocated read-only data (mostly the
//! IANA time-zone tables of `chrono-tz`, which are full of `&'static str`), so each
//! start wrote ~300 pages copy-on-write before `main`: ≈1.5 ms of a `list-tasks` call
//! that otherwise takes ≈3.5 ms, and ≈1.2 MB of private memory in the daemon. As a
//! position-dependent executable those tables are resolved at link time and stay
//! shared, clean pages.
//!
//! The trade-off: the executable's own image is not address-randomised (the stack,
//! heap, mmap regions and shared libraries still are). Build with
//! `RUST_CLAW_PIE=1 cargo build --release` to keep a PIE; the README's Performance
//! section has the numbers for both.
//!
//! Only the final link of the binary changes (`rustc-link-arg-bins`), so dependencies,
//! tests and benches build exactly as before and no build cache is invalidated.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUST_CLAW_PIE");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    let keep_pie = std::env::var_os("RUST_CLAW_PIE").is_some_and(|v| v != "0" && !v.is_empty());
    if linux && !keep_pie {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
