//! `makuo generate`: man pages and shell completions, built by walking [`Cli::command`].
//!
//! Nothing here lists a flag; everything comes from the clap definitions in `cli.rs`. Output is
//! deterministic (no dates, no absolute paths, no terminal width), so the generated files can
//! be committed and `tests/generated.rs` can fail when they go stale. This module writes only
//! under the output directory it is given.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, ValueHint};
use clap_complete::{Generator, Shell};
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use super::{pages, Cli, GenerateWhat};
use crate::exit::Exit;

/// The binary name used in completions and man page titles.
const BIN: &str = "makuo";

/// Writes the files selected by `what` under `out_dir` (`man/…` and `completions/…`),
/// creating those directories. Returns the written paths relative to `out_dir`, in the order
/// written.
pub fn generate(what: GenerateWhat, out_dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, bytes) in render(what)? {
        let path = out_dir.join(&rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| with_path(e, dir))?;
        }
        fs::write(&path, bytes).map_err(|e| with_path(e, &path))?;
        written.push(rel);
    }
    Ok(written)
}

/// Renders the files selected by `what` in memory: (path relative to the output dir, bytes).
pub fn render(what: GenerateWhat) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut files = Vec::new();
    if matches!(what, GenerateWhat::Man | GenerateWhat::All) {
        files.extend(man_pages()?);
    }
    let shells: &[Shell] = match what {
        GenerateWhat::Man => &[],
        GenerateWhat::Bash => &[Shell::Bash],
        GenerateWhat::Zsh => &[Shell::Zsh],
        GenerateWhat::Fish => &[Shell::Fish],
        GenerateWhat::All => &[Shell::Bash, Shell::Zsh, Shell::Fish],
    };
    for &shell in shells {
        files.push(completion(shell));
    }
    Ok(files)
}

fn with_path(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn completion(shell: Shell) -> (PathBuf, Vec<u8>) {
    // Only what a user may type: the hidden `generate` is left out (clap_complete would
    // offer it), and `help` is offered as `makuo help [CMD]`.
    // Leaked: the generator runs once, and clap keeps the names as &'static str.
    let full: &'static clap::Command = Box::leak(Box::new(Cli::command()));
    let mut cmd = clap::Command::new(BIN)
        .version(env!("CARGO_PKG_VERSION"))
        .disable_help_subcommand(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
        .subcommand(
            clap::Command::new("help")
                .about("Print the help of makuo or of CMD")
                .arg(
                    clap::Arg::new("cmd").value_name("CMD").value_parser(
                        clap::builder::PossibleValuesParser::new(
                            full.get_subcommands()
                                .filter(|s| !s.is_hide_set())
                                .map(|s| clap::builder::PossibleValue::new(s.get_name())),
                        ),
                    ),
                ),
        );
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, BIN, &mut buf);
    if shell == Shell::Bash {
        buf = bash_values(&String::from_utf8_lossy(&buf), full).into_bytes();
    }
    (Path::new("completions").join(shell.file_name(BIN)), buf)
}

/// The bash script completes file names after every option that takes a value; here only
/// options whose value is a path keep that. `-t`/`--target` completes the member names a
/// live daemon lists (`makuo members`), every other value nothing.
fn bash_values(text: &str, cmd: &clap::Command) -> String {
    let mut paths = std::collections::BTreeSet::new();
    let mut all = vec![cmd];
    let mut i = 0;
    while i < all.len() {
        all.extend(all[i].get_subcommands());
        i += 1;
    }
    for c in all {
        for a in c.get_arguments() {
            let hint = a.get_value_hint();
            let named = a.get_value_names().is_some_and(|v| {
                v.iter()
                    .any(|n| ["FILE", "DIR", "PATH"].iter().any(|w| n.contains(w)))
            });
            if matches!(
                hint,
                ValueHint::FilePath
                    | ValueHint::DirPath
                    | ValueHint::AnyPath
                    | ValueHint::ExecutablePath
            ) || (hint == ValueHint::Unknown && named)
            {
                if let Some(l) = a.get_long() {
                    paths.insert(format!("--{l})"));
                }
                if let Some(s) = a.get_short() {
                    paths.insert(format!("-{s})"));
                }
            }
        }
    }
    const FILES: &str = r#"COMPREPLY=($(compgen -f "${cur}"))"#;
    const MEMBERS: &str = r#"COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))"#;
    const NO_FILES: &str =
        r#"[[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault"#;
    let mut out = String::with_capacity(text.len());
    let mut option = "";
    for l in text.lines() {
        let t = l.trim();
        if t.starts_with('-') && t.ends_with(')') && !t.contains(' ') {
            option = t;
        }
        if t == FILES && !paths.contains(option) {
            let indent = &l[..l.len() - l.trim_start().len()];
            out.push_str(indent);
            out.push_str(if matches!(option, "-t)" | "--target)") {
                MEMBERS
            } else {
                "COMPREPLY=()"
            });
            // Nothing to offer must not fall back to file names (`complete -o default`).
            out.push('\n');
            out.push_str(indent);
            out.push_str(NO_FILES);
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    out
}

/// `makuo.1` plus one page per visible subcommand (`makuo-sync.1`, `makuo-exclude-add.1`, …).
fn man_pages() -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    // The pages name the release, not the commit they were generated at: they are committed
    // and must not go stale with every commit (`--version` itself names the commit).
    let mut cmd = Cli::command().version(env!("CARGO_PKG_VERSION"));
    cmd.build();
    let mut pages = Vec::new();
    add_pages(&cmd, true, &mut pages)?;
    Ok(pages)
}

fn add_pages(
    cmd: &clap::Command,
    top: bool,
    pages: &mut Vec<(PathBuf, Vec<u8>)>,
) -> io::Result<()> {
    let source = format!("{BIN} {}", env!("CARGO_PKG_VERSION"));
    let man = Man::new(cmd.clone()).source(source).manual("makuo manual");
    // Section by section rather than `render`, to put the exit table in EXIT STATUS (clap_mangen
    // would title `after_long_help` "EXTRA") and to add SEE ALSO on subcommand pages. Every
    // `render_*` call writes roff's preamble; only the first copy is kept.
    let mut sections: Vec<Vec<u8>> = Vec::new();
    let mut section = |f: &dyn Fn(&mut Vec<u8>) -> io::Result<()>| -> io::Result<()> {
        let mut b = Vec::new();
        f(&mut b)?;
        sections.push(b);
        Ok(())
    };
    section(&|b| man.render_title(b))?;
    section(&|b| man.render_name_section(b))?;
    section(&|b| man.render_synopsis_section(b))?;
    section(&|b| man.render_description_section(b))?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        section(&|b| man.render_options_section(b))?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        section(&|b| man.render_subcommands_section(b))?;
    }
    let page = man.get_filename();
    let page = page.trim_end_matches(".1");
    section(&|b| {
        let mut roff = Roff::new();
        extra_sections(&mut roff, page);
        roff.to_writer(b)
    })?;
    section(&|b| {
        let mut roff = Roff::new();
        if top {
            exit_status_section(&mut roff);
        } else {
            roff.control("SH", ["SEE ALSO"]);
            roff.text([bold(BIN), roman("(1), for the exit status table; ")]);
            roff.text([bold("makuo-console"), roman("(7).")]);
        }
        roff.to_writer(b)
    })?;
    if top {
        section(&|b| man.render_version_section(b))?;
    }
    let mut preamble = Vec::new();
    Roff::new().to_writer(&mut preamble)?;
    let mut buf = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let s = match s.strip_prefix(preamble.as_slice()) {
            Some(rest) if i > 0 => rest,
            _ => s,
        };
        buf.extend_from_slice(s);
    }
    pages.push((Path::new("man").join(man.get_filename()), buf));
    if top {
        pages.push((Path::new("man").join("makuo-console.7"), console_page()?));
    }

    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        add_pages(sub, false, pages)?;
    }
    Ok(())
}

/// EXAMPLES, FILES, SIGNALS and ENVIRONMENT of page `page` (`makuo-sync`), from the table
/// in `pages.rs` and the config keys.
fn extra_sections(roff: &mut Roff, page: &str) {
    let examples: Vec<_> = pages::EXAMPLES.iter().filter(|e| e.0 == page).collect();
    if !examples.is_empty() {
        roff.control("SH", ["EXAMPLES"]);
        for (_, what, cmd) in examples {
            roff.control("PP", []);
            roff.text([roman(*what)]);
            roff.control("IP", []);
            roff.text([bold(*cmd)]);
        }
    }
    let files: Vec<_> = pages::FILES.iter().filter(|f| f.0 == page).collect();
    if !files.is_empty() {
        roff.control("SH", ["FILES"]);
        for (_, path, what) in files {
            roff.control("TP", []);
            roff.text([bold(*path)]);
            roff.text([roman(*what)]);
        }
    }
    if !pages::SERVICE_PAGES.contains(&page) {
        return;
    }
    roff.control("SH", ["SIGNALS"]);
    roff.text([roman("What the daemon does on each signal:")]);
    for (sig, what) in pages::SIGNALS {
        roff.control("TP", []);
        roff.text([bold(*sig)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    for (var, what) in pages::ENVIRONMENT {
        roff.control("TP", []);
        roff.text([bold(*var)]);
        roff.text([roman(*what)]);
    }
    roff.control("TP", []);
    roff.text([bold("MAKUO_KEY")]);
    roff.text([roman(
        "Every config file key (every long option of makuo daemon, '-' written '_') as an \
         environment variable in upper case; the command line wins over the environment, \
         which wins over the config file. The front end reads the console and cluster ones:",
    )]);
    let keys: Vec<String> = crate::config::keys()
        .iter()
        .map(|(k, _)| crate::config::env_name(k))
        .collect();
    roff.control("IP", []);
    roff.text([roman(keys.join(", "))]);
}

/// `makuo-console(7)`: the console's words (`console::HELP`) and its replies.
fn console_page() -> io::Result<Vec<u8>> {
    let mut roff = Roff::new();
    let version = format!("{BIN} {}", env!("CARGO_PKG_VERSION"));
    roff.control("TH", ["makuo-console", "7", "", &version, "makuo manual"]);
    roff.control("SH", ["NAME"]);
    roff.text([roman(
        "makuo-console - the words of a makuo daemon's console",
    )]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(pages::CONSOLE_ABOUT)]);
    roff.control("SH", ["COMMANDS"]);
    roff.control("nf", []);
    for l in crate::console::HELP {
        roff.text([roman(*l)]);
    }
    roff.control("fi", []);
    roff.control("SH", ["REPLIES"]);
    for (line, what) in pages::CONSOLE_REPLIES {
        roff.control("TP", []);
        roff.text([bold(*line)]);
        roff.text([roman(*what)]);
    }
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold(BIN),
        roman("(1), "),
        bold("makuo-daemon"),
        roman("(1)"),
    ]);
    let mut b = Vec::new();
    roff.to_writer(&mut b)?;
    Ok(b)
}

/// The EXIT STATUS section, from the table in `exit.rs`.
fn exit_status_section(roff: &mut Roff) {
    roff.control("SH", ["EXIT STATUS"]);
    for e in Exit::ALL {
        roff.control("TP", []);
        roff.text([bold(e.code().to_string())]);
        roff.text([roman(e.meaning())]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(files: &[(PathBuf, Vec<u8>)], name: &str) -> String {
        let (_, bytes) = files
            .iter()
            .find(|(p, _)| p == Path::new(name))
            .unwrap_or_else(|| panic!("{name} not generated"));
        String::from_utf8(bytes.clone()).unwrap()
    }

    #[test]
    fn all_writes_every_kind() {
        let files = render(GenerateWhat::All).unwrap();
        let names: Vec<_> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        for want in [
            "man/makuo.1",
            "man/makuo-daemon.1",
            "man/makuo-sync.1",
            "man/makuo-exclude-add.1",
            "completions/makuo.bash",
            "completions/_makuo",
            "completions/makuo.fish",
        ] {
            assert!(
                names.iter().any(|n| n == want),
                "{want} missing from {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n.contains("generate")), "{names:?}");
    }

    #[test]
    fn man_page_has_exit_status_and_flags() {
        let files = render(GenerateWhat::Man).unwrap();
        let top = page(&files, "man/makuo.1");
        assert!(top.contains(".SH \"EXIT STATUS\""), "{top}");
        assert!(!top.contains("EXTRA"));
        for e in Exit::ALL {
            assert!(top.contains(&format!("\\fB{}\\fR", e.code())), "{top}");
        }
        let daemon = page(&files, "man/makuo-daemon.1");
        assert!(daemon.contains("console\\-socket"), "{daemon}");
        let sync = page(&files, "man/makuo-sync.1");
        assert!(
            sync.contains("bwlimit") && sync.contains("SEE ALSO"),
            "{sync}"
        );
    }

    #[test]
    fn output_is_deterministic() {
        assert_eq!(
            render(GenerateWhat::All).unwrap(),
            render(GenerateWhat::All).unwrap()
        );
    }
}
