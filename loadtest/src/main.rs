//! The `loadtest` binary: parse options, run the command, print the result or one line
//! saying what went wrong. The work is in the library.
//!
//! Exit codes: 0 done (every check passed); 1 the run could not be done (target
//! unreachable, reset refused, output not writable, ...); 2 usage error (bad options, a
//! malformed `--check`; clap's own code); 3 everything ran but a `--check` failed.

use std::process::ExitCode;

use clap::Parser as _;
use loadtest::LoadtestError;
use loadtest::check::EXIT_CHECK_FAILED;
use loadtest::cli::Opts;

const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    // Usage errors (including a malformed --check) exit 2 here, before anything is sent.
    let opts = Opts::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("loadtest: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(loadtest::execute(opts)) {
        Ok(output) => {
            print!("{output}");
            if output.checks_pass() {
                ExitCode::SUCCESS
            } else {
                eprintln!("loadtest: a check failed (exit code {EXIT_CHECK_FAILED})");
                ExitCode::from(EXIT_CHECK_FAILED)
            }
        }
        Err(e) => {
            // One line: every error's message already says what and what to do.
            eprintln!("loadtest: {e}");
            match e {
                LoadtestError::Usage(_) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
