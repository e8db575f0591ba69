//! The `loadtest` binary: parse options, run the command, print the result or one line
//! saying what went wrong. The work is in the library.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser as _;
use loadtest::cli::Opts;

fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: every error's message already says what and what to do.
            eprintln!("loadtest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    let opts = Opts::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let output = runtime.block_on(loadtest::execute(opts))?;
    print!("{output}");
    Ok(())
}
