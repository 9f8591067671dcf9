//! `cargo bench`: the full benchmark, printed as a markdown table.
//!
//! `cargo bench -- --quick` runs the tiny configuration; `--postgres URL` (or
//! `THEMIS_BENCH_POSTGRES_URL`) adds the Postgres rows; `--only NAME` (repeatable) runs
//! the scenarios whose name contains NAME (`latency`, `overhead`, `polling`, `store`,
//! `memory`, `code`, `agent`). `--only scaleout` (with `--postgres`) runs N = 1, 2, 4, 8
//! instances on one Postgres, which no plain `cargo bench` does.

mod support;

/// The same allocator as the `themis` binary, so numbers match the service's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // The bench's SSE readers receive over a gigabyte; with transparent huge pages, each
    // fresh page their buffers touch is a 2 MiB zeroing, which was most of the bench's
    // CPU in that scenario and made the load generator, not the service, set the
    // latency. Only the bench: the service it starts keeps the machine's setting.
    // SAFETY: a process-wide flag; no memory is handed to the kernel.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = if args.iter().any(|a| a == "--quick") {
        support::BenchConfig::tiny()
    } else {
        support::BenchConfig::full()
    };
    config.postgres_url = args
        .iter()
        .position(|a| a == "--postgres")
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var("THEMIS_BENCH_POSTGRES_URL").ok());
    config.only = args
        .iter()
        .enumerate()
        .filter(|(_, a)| *a == "--only")
        .filter_map(|(i, _)| args.get(i + 1).cloned())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(support::run(&config)) {
        Ok(report) => print!("{}", report.markdown()),
        Err(e) => {
            eprintln!("benchmark failed: {e}");
            std::process::exit(1);
        }
    }
}
