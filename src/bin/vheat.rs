//! The `vheat` command-line tool: `vheat classify | train | convert | info | bench | verify`
//! (see `vheat --help`). Everything is in [`vheat::cli`]; this file parses and runs.

use std::process::ExitCode;

use clap::Parser;
use vheat::cli::{exit_code, Cli};

fn main() -> ExitCode {
    // clap prints its own parse errors and `--help`, and exits (status 2 for an error).
    exit_code(Cli::parse().run())
}
