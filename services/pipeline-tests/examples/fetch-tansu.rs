//! Fetches the pinned tansu binary (download, SHA-256 check, unpack; cached under
//! `target/tansu/`) and prints its path, or copies it to the path given:
//!
//!     cargo run -q -p pipeline-tests --example fetch-tansu [DEST]
//!
//! For the scripts under `deploy/` that need the same broker (the stand-in image), so that the
//! download and the hash check exist only in `pipeline_tests::broker`. An example rather than a
//! binary so that the image build (`cargo build --bins`) never compiles the harness.

use std::process::ExitCode;

fn main() -> ExitCode {
    let binary = pipeline_tests::tansu_binary();
    let binary = binary.canonicalize().unwrap_or(binary);
    let Some(dest) = std::env::args_os().nth(1) else {
        #[allow(clippy::print_stdout)] // the path is this tool's output
        {
            println!("{}", binary.display());
        }
        return ExitCode::SUCCESS;
    };
    match std::fs::copy(&binary, &dest) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!(
                "cannot copy {} to {}: {err}",
                binary.display(),
                std::path::Path::new(&dest).display()
            );
            ExitCode::FAILURE
        }
    }
}
