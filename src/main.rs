//! The `makuo` binary: parse the command line, dispatch, map the outcome to an exit status.
//!
//! Kept thin on purpose: flags live in `cli.rs`, codes in `exit.rs`, the work in the library.
//! This is the only function in the crate that returns an `ExitCode`.

use std::io::Write;
use std::process::ExitCode;

use makuo::cli::{generate, Cli, Command};
use makuo::exit::Exit;

fn main() -> ExitCode {
    let (cli, _matches) = match Cli::parse_with_matches(std::env::args_os()) {
        Ok(parsed) => parsed,
        Err(err) => {
            // --help and --version come back as errors that go to stdout and mean success.
            let _ = err.print();
            return if err.use_stderr() {
                Exit::Error
            } else {
                Exit::Ok
            }
            .into();
        }
    };
    match cli.command {
        Command::Generate(args) => match generate::generate(args.what, &args.out) {
            Ok(files) => {
                let mut out = std::io::stdout().lock();
                for f in files {
                    // A closed stdout (e.g. `| head`) is not a failure.
                    let _ = writeln!(out, "{}", args.out.join(f).display());
                }
                Exit::Ok.into()
            }
            Err(e) => {
                eprintln!("makuo: generate: {e:#}");
                Exit::Error.into()
            }
        },
        other => {
            eprintln!("makuo: {} is not wired yet", other.name());
            Exit::Error.into()
        }
    }
}
