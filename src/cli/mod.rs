//! Command-line entry: the `imgsearch` subcommands.

use std::process::ExitCode;

pub fn main() -> ExitCode {
    ExitCode::SUCCESS
}
