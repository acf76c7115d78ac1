//! ostree-ext's own command line (`ostree-ext-cli container encapsulate ...`),
//! built from the ostree-ext crate on crates.io so the benchmark
//! (`tests/bench.sh`) can time it beside treeport on the same commit.

fn main() -> std::process::ExitCode {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    match rt.block_on(ostree_ext::cli::run_from_iter(std::env::args_os())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
