//! The console target (its own test, so the message-type cases above can grow independently):
//! what a connection sends, through the line framing (`console::read_line`), the strict parser
//! (`console::parse_line`) and the session gate (`console_access::Gate`: strictness, password).

use super::*;

use makuo::console::{self, Input, Request};
use makuo::console_access::{Gate, Note, Verdict, MAX_TRIES};
use makuo::secret_file::Password;

/// Longest answer a line may draw from the gate or parser.
pub(crate) const MAX_CONSOLE_ANSWER: usize = 256;

/// Lines a client might send: real commands, near misses, other protocols.
pub(crate) const CONSOLE_CORPUS: &[&str] = &[
    "send -n -r -t web2 htdocs",
    "sync -r .",
    "sync -r --delete --max-delete 10 --json -- a \"b c\" d\\ e",
    "dsync -r x",
    "md5 -r -t \"web 1\" --json",
    "check",
    "members --json",
    "status",
    "exclude add \"*.tmp\"",
    "exclude del *.tmp",
    "include add keep/",
    "exclude list",
    "exclude clear",
    "loglevel 9",
    "loglevel 10",
    "alive",
    "echo hello \"big world\"",
    "help",
    "?",
    "quit",
    "BYE",
    "password s3cret!",
    "password \"s3cret!\"",
    "password wrong",
    "",
    "   \t ",
    "POST / HTTP/1.1",
    "GET /?cmd=sync%20-r%20. HTTP/1.0",
    "Host: 127.0.0.1:5000",
    "User-Agent: curl/8.5.0",
    "Content-Type: application/x-www-form-urlencoded",
    "Content-Length: 11",
    "\u{16}\u{3}\u{1}",
    "SSH-2.0-OpenSSH_9.6",
    "EHLO example.com",
    "send --max-delete",
    "send -t",
    "echo \"open",
    "echo trailing\\",
];

pub(crate) fn console_line(rng: &mut Rng) -> Vec<u8> {
    match rng.below(10) {
        0 => noise(rng, 200),
        1 => {
            // Printable words, some of them commands.
            let n = rng.below(12);
            let mut words = Vec::new();
            for _ in 0..n {
                if rng.chance(0.3) {
                    words.push(pick(rng, console::COMMANDS).to_string());
                } else {
                    let len = rng.below(12) as usize;
                    let w: String = (0..len)
                        .map(|_| (b' ' + 1 + rng.below(94) as u8) as char)
                        .collect();
                    words.push(w);
                }
            }
            words.join(" ").into_bytes()
        }
        2 => {
            // Long lines near and beyond the cap.
            let cmd = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let mut l = cmd;
            let target = console::MAX_LINE - 8 + rng.below(16) as usize;
            while l.len() < target {
                l.push(b'a' + rng.below(26) as u8);
            }
            l
        }
        _ => {
            let mut l = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let other = pick(rng, CONSOLE_CORPUS).as_bytes().to_vec();
            let n = rng.below(4);
            mutate(rng, &mut l, &other, n);
            l
        }
    }
}

/// The checks on one verdict: answers are single short lines without control characters,
/// delays are bounded, and nothing runs from a line whose first word is not a command.
#[track_caller]
pub(crate) fn check_verdict(v: &Verdict, line: &[u8], what: &str) {
    match v {
        Verdict::Answer { wait, line: a, .. } => {
            assert!(
                a == "ok" || a.starts_with("error: "),
                "{what}: answer {a:?}"
            );
            assert!(
                a.len() <= MAX_CONSOLE_ANSWER,
                "{what}: {} bytes: {a:?}",
                a.len()
            );
            assert!(!a.chars().any(char::is_control), "{what}: {a:?}");
            assert!(*wait <= Duration::from_secs(u64::from(MAX_TRIES)), "{what}");
        }
        Verdict::Run(req) => {
            let text =
                std::str::from_utf8(line).unwrap_or_else(|_| panic!("{what}: ran non-UTF-8"));
            assert!(
                !text.chars().any(|c| c.is_control() && c != '\t'),
                "{what}: ran a line with a control character"
            );
            match text.split_whitespace().next() {
                None => assert_eq!(req, &Request::Nothing, "{what}"),
                Some(first) => assert!(
                    console::COMMANDS
                        .iter()
                        .any(|c| c.eq_ignore_ascii_case(first)),
                    "{what}: ran a line starting with {first:?}"
                ),
            }
            if let Request::Echo(s) = req {
                assert!(s.len() <= line.len(), "{what}");
            }
            if let Request::Send(c) | Request::Check(c) = req {
                assert!(c.paths.len() + c.targets.len() <= line.len() + 1, "{what}");
            }
        }
    }
}

/// Runs `f`, turning a panic into a failure that names the input.
pub(crate) fn no_panic<T>(what: &str, input: &[u8], f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(_) => panic!(
            "console fuzz: panic in {what} on {:?}",
            String::from_utf8_lossy(input)
        ),
    }
}

#[derive(Debug, Default)]
pub(crate) struct ConsoleRun {
    pub(crate) lines: u64,
    pub(crate) ran: u64,
    pub(crate) closed_foreign: u64,
    pub(crate) wrong_passwords: u64,
    pub(crate) authed: u64,
    pub(crate) framed: u64,
}

/// Sessions of random and mutated lines through a gate (half of them behind a password).
pub(crate) fn console_sessions(rng: &mut Rng, cases: u64, seed: u64, run: &mut ConsoleRun) {
    let pw = Password::new(b"s3cret!").unwrap();
    let mut case = 0;
    while case < cases {
        let mut gate = Gate::new(rng.chance(0.5).then_some(&pw));
        let mut failures = 0;
        for _ in 0..1 + rng.below(20) {
            let line = console_line(rng);
            case += 1;
            run.lines += 1;
            let what = format!(
                "seed {seed:#x} console case {case} line {:?}",
                String::from_utf8_lossy(&line)
            );
            let was_authed = gate.authed();
            let v = no_panic("Gate::line", &line, || gate.line(&line));
            check_verdict(&v, &line, &what);
            match &v {
                Verdict::Run(req) => {
                    run.ran += 1;
                    assert!(
                        was_authed || *req == Request::Nothing,
                        "{what}: ran {req:?} before the password"
                    );
                }
                Verdict::Answer { close, note, .. } => {
                    match note {
                        Some(Note::NotACommand) => {
                            assert!(*close, "{what}: a foreign line must end the session");
                            run.closed_foreign += 1;
                        }
                        Some(Note::WrongPassword) => {
                            failures += 1;
                            run.wrong_passwords += 1;
                            assert_eq!(*close, failures >= MAX_TRIES, "{what}");
                        }
                        None => {}
                    }
                    if *close {
                        break;
                    }
                }
            }
            if gate.authed() && !was_authed {
                run.authed += 1;
            }
            // The parser alone: same answer on every call (no hidden state), bounded errors.
            let p = no_panic("parse_line", &line, || console::parse_line(&line));
            if let Err(e) = &p {
                let m = e.to_string();
                assert!(m.len() <= MAX_CONSOLE_ANSWER, "{what}: {m:?}");
                assert!(!m.contains('\n'), "{what}");
            }
            assert_eq!(p, console::parse_line(&line), "{what}");
        }
    }
}

/// A reader that hands out what it holds in chunks of random size.
pub(crate) struct Chunks<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) rng: Rng,
}

impl std::io::Read for Chunks<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.rng.below(40) as usize)
            .min(self.data.len())
            .min(buf.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Byte streams through the line framing with small caps: no line above the cap, and every
/// line returned is exactly the input's next line (without `\r`), until the first over-long one.
pub(crate) fn console_framing(rng: &mut Rng, cases: u64, seed: u64, run: &mut ConsoleRun) {
    for case in 0..cases {
        let mut stream = Vec::new();
        for _ in 0..rng.below(8) {
            let mut l = console_line(rng);
            l.truncate(rng.below(64) as usize);
            stream.extend_from_slice(&l);
            if rng.chance(0.8) {
                stream.extend_from_slice(if rng.chance(0.5) { b"\r\n" } else { b"\n" });
            }
        }
        let max = 1 + rng.below(40) as usize;
        let what = format!("seed {seed:#x} framing case {case} max {max} stream {stream:?}");
        let mut r = std::io::BufReader::with_capacity(
            1 + rng.below(16) as usize,
            Chunks {
                data: &stream,
                rng: Rng(rng.next()),
            },
        );
        let mut want = stream
            .split(|&b| b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
        let ends_with_newline = stream.last() == Some(&b'\n');
        let mut buf = Vec::new();
        let mut guard = 0;
        loop {
            guard += 1;
            assert!(guard < 10_000, "{what}: no end");
            let got = no_panic("read_line", &stream, || {
                console::read_line(&mut r, max, &mut buf)
            })
            .unwrap();
            match got {
                Input::Line => {
                    assert!(buf.len() <= max, "{what}");
                    let w = want.next().unwrap_or_else(|| panic!("{what}: extra line"));
                    assert_eq!(buf, w, "{what}");
                    run.framed += 1;
                }
                Input::TooLong => {
                    let w = want
                        .next()
                        .unwrap_or_else(|| panic!("{what}: extra too-long"));
                    assert!(w.len() > max, "{what}: {w:?} is not too long");
                    break;
                }
                Input::Eof => {
                    // Only the empty remainder after a final newline may be left.
                    let rest: Vec<&[u8]> = want.collect();
                    assert!(
                        rest.is_empty()
                            || (ends_with_newline && rest == [b""])
                            || stream.is_empty(),
                        "{what}: lines left unread: {rest:?}"
                    );
                    break;
                }
            }
        }
    }
}

#[test]
pub(crate) fn fuzz_console_lines_framing_and_gate() {
    let (seed, cases) = params();
    let started = Instant::now();
    let mut rng = Rng(seed ^ 0xc0_501e);
    let mut run = ConsoleRun::default();
    console_sessions(&mut rng, cases, seed, &mut run);
    console_framing(&mut rng, cases / 4, seed, &mut run);
    eprintln!(
        "fuzz: console: {} lines in {:.1}s ({} ran, {} sessions ended by a foreign line, {} wrong \
         passwords, {} logins), {} framed lines",
        run.lines,
        started.elapsed().as_secs_f64(),
        run.ran,
        run.closed_foreign,
        run.wrong_passwords,
        run.authed,
        run.framed
    );
    // The run reached every branch.
    assert!(run.ran > cases / 20, "{run:?}");
    assert!(run.closed_foreign > cases / 50, "{run:?}");
    assert!(run.wrong_passwords > 0 && run.authed > 0, "{run:?}");
    assert!(run.framed > cases / 10, "{run:?}");
}
