//! The `makuo` binary: parse the command line, dispatch, map the outcome to an exit status.
//!
//! Kept thin on purpose: flags live in `cli.rs`, codes in `exit.rs`, the work in the library.
//! This is the only function in the crate that returns an `ExitCode`.

use std::io::Write;
use std::process::ExitCode;

use makuo::cli::{generate, Cli, Command, ExcludeAction};
use makuo::client::quote;
use makuo::config;
use makuo::dropin::Door;
use makuo::exit::Exit;

/// Whether the command line asks for `--json` (before any `--`): usage errors then print one
/// JSON document too.
fn wants_json(argv: &[std::ffi::OsString]) -> bool {
    argv.iter()
        .skip(1)
        .take_while(|a| *a != "--")
        .any(|a| a == "--json")
}

/// The one JSON document of a run that failed before it could report anything else:
/// `{"exit":1,"error":"..."}` (the first line of the message, clap's `error: ` prefix gone).
fn json_error(msg: &str) {
    let first = msg.lines().next().unwrap_or("");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let _ = writeln!(
        std::io::stdout().lock(),
        "{{\"exit\":{},\"error\":{}}}",
        Exit::Error.code(),
        serde_json::Value::from(first)
    );
}

fn main() -> ExitCode {
    // Installed as `makuosan` or `msync`, the binary takes their options.
    let argv = match makuo::dropin::front_door(std::env::args_os().collect()) {
        Door::Makuo(argv) => argv,
        Door::Exit(e) => return e.into(),
        Door::Script(s) => {
            return match makuo::dropin::run_script(&s) {
                Ok(e) => e.into(),
                Err(e) => {
                    eprintln!("msync: {e:#}");
                    Exit::Error.into()
                }
            }
        }
    };
    // `makuo help [CMD...]` is `makuo [CMD...] --help`.
    let argv = if argv.get(1).is_some_and(|a| a == "help") {
        let mut a: Vec<std::ffi::OsString> = vec![argv[0].clone()];
        a.extend(argv[2..].iter().cloned());
        a.push("--help".into());
        a
    } else {
        argv
    };
    let json = wants_json(&argv);
    let (cli, matches) = match Cli::parse_with_matches(argv) {
        Ok(parsed) => parsed,
        Err(err) => {
            // --help and --version come back as errors that go to stdout and mean success.
            let _ = err.print();
            if json && err.use_stderr() {
                json_error(&err.to_string());
            }
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
            let name = other.name();
            let sub = matches
                .subcommand()
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            let r =
                match other {
                    Command::Daemon(a) => daemon(a.print_config, &sub),
                    Command::Sync(mut a) => config::apply_front(&mut a.front, &sub)
                        .and_then(|_| makuo::client::sync(&a, &sub)),
                    Command::Check(mut a) => config::apply_front(&mut a.front, &sub)
                        .and_then(|_| makuo::client::check(&a, &sub)),
                    Command::Rollback(mut a) => config::apply_front(&mut a.front, &sub)
                        .and_then(|_| makuo::client::rollback(&a, &sub)),
                    Command::Watch(mut a) => config::apply_front(&mut a.front, &sub)
                        .and_then(|_| makuo::client::watch(&a, &sub)),
                    Command::Members(mut a) => config::apply_front(&mut a.front, &sub)
                        .and_then(|_| makuo::client::members(&a, &sub)),
                    Command::Doctor(mut a) => config::apply_front(&mut a, &sub)
                        .and_then(|_| makuo::client::doctor(&a, &sub)),
                    Command::Status(mut a) => config::apply_console(&mut a.console, &sub)
                        .and_then(|_| makuo::client::status(&a)),
                    Command::Exclude(mut a) => {
                        if let Err(e) = config::apply_console(&mut a.console, &sub) {
                            eprintln!("makuo {name}: {e:#}");
                            return Exit::Error.into();
                        }
                        let words = match &a.action {
                            ExcludeAction::Add(p) => p
                                .patterns
                                .iter()
                                .map(|p| format!("standing add {}", quote(p)))
                                .collect::<Vec<_>>(),
                            ExcludeAction::Del(p) => p
                                .patterns
                                .iter()
                                .map(|p| format!("standing del {}", quote(p)))
                                .collect(),
                            ExcludeAction::List => vec!["standing list".into()],
                            ExcludeAction::Clear => vec!["standing clear".into()],
                        };
                        words.iter().try_fold(Exit::Ok, |acc, w| {
                            makuo::client::console_words(&a.console, w, &a.output).map(|e| {
                                if acc == Exit::Ok {
                                    e
                                } else {
                                    acc
                                }
                            })
                        })
                    }
                    Command::Loglevel(mut a) => config::apply_console(&mut a.console, &sub)
                        .and_then(|_| {
                            makuo::client::console_words(
                                &a.console,
                                &format!("loglevel {}", a.level),
                                &a.output,
                            )
                        }),
                    Command::Keygen(a) => makuo::seal::keygen(&a.file.to_string_lossy())
                        .map(|_| Exit::Ok)
                        .map_err(|e| anyhow::anyhow!("{e}")),
                    Command::Demo(a) => makuo::demo::run(&a),
                    Command::Generate(_) => unreachable!(),
                };
            match r {
                Ok(e) => e.into(),
                Err(e) => {
                    if is_broken_pipe(&e) {
                        return Exit::Ok.into();
                    }
                    eprintln!("makuo {name}: {e:#}");
                    if json {
                        json_error(&format!("{e:#}"));
                    }
                    Exit::Error.into()
                }
            }
        }
    }
}

/// `makuo daemon`: flags, environment and config file resolved, then printed
/// (`--print-config`) or run.
fn daemon(print: bool, sub: &clap::ArgMatches) -> anyhow::Result<Exit> {
    let resolved = config::resolve_daemon(sub)?;
    if print {
        print!("{}", resolved.render());
        return Ok(Exit::Ok);
    }
    makuo::daemon::run(resolved)
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
