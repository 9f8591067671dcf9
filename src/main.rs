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

/// How long mimalloc keeps freed pages before returning them to the OS. At 0 every
/// batch of cases gave pages back and faulted them in again (page faults and `madvise`
/// were a fifth of an engine-only run's CPU); at mimalloc's own 1 s a 100,000-case
/// `POST /runs` peaked at 5× its body. 100 ms keeps steady work on warm pages and that
/// request at ~2.4× (issue 12; docs/performance.md).
const PURGE_DELAY_MS: std::ffi::c_long = 100;

/// Transparent huge pages off for this process: mimalloc asks for them on its arenas,
/// and each fault then zeroes 2 MiB that a few small allocations touch, which inflated
/// the resident set (the `POST` above: 2.1–2.9× its body with them, 1.5× without) and
/// cost CPU on every page mimalloc purged and touched again.
fn disable_transparent_huge_pages() {
    // SAFETY: a process flag; no pointers are passed.
    let _ = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

#[tokio::main]
async fn main() -> ExitCode {
    // The operator's own `MIMALLOC_PURGE_DELAY` and `MIMALLOC_ALLOW_THP` (mimalloc
    // reads them itself) win.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one global option (an atomic store); valid at any time.
        unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_none() {
        disable_transparent_huge_pages();
    }
    cli::main(cli::Cli::parse()).await
}
