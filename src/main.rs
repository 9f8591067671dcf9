use std::process::ExitCode;

use clap::Parser;

mod cli;

/// mimalloc: many small short-lived allocations per case (JSON values, events); it is
/// faster than the system allocator here and returns freed memory to the OS.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

unsafe extern "C" {
    /// mimalloc's `mi_option_set` (linked in by the `mimalloc` crate).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in mimalloc v3's `enum mi_option_e` (include/mimalloc.h).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

#[tokio::main]
async fn main() -> ExitCode {
    // Freed pages go back to the OS at once instead of after mimalloc's default 1 s: a
    // request's transient memory (a 100,000-case `POST /runs` parses ~10 MiB of cases)
    // then never adds up across requests into the peak (issue 13: 45 → 26 MiB for that
    // request). The operator's own `MIMALLOC_PURGE_DELAY` (mimalloc reads it itself)
    // wins: at 1 s engine-only cases cost ~25% less CPU, for a higher peak (README,
    // Performance).
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one global option (an atomic store); valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
    }
    cli::main(cli::Cli::parse()).await
}
