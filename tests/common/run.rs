//! Running commands: the `makuo` binary and others with a time limit, their output and result tables.

use super::*;

/// What a finished command printed.
#[derive(Debug)]
pub struct Run {
    /// Exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

/// One row of the per-member table (`MEMBER ADDRESS FILES BYTES DELETED RESULT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub name: String,
    pub address: String,
    pub files: u64,
    pub bytes: u64,
    pub deleted: u64,
    pub result: String,
}

impl Run {
    /// Non-empty stdout lines.
    pub fn lines(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }

    /// The per-member table at the end of stdout: `(name, address, files, bytes, result)` rows,
    /// after checking the header. `n` is the number of member rows expected.
    pub fn table(&self, n: usize) -> Vec<Row> {
        let lines = self.lines();
        assert!(lines.len() > n, "no table of {n} rows in:\n{self}");
        let start = lines.len() - n - 1;
        let header: Vec<&str> = lines[start].split_whitespace().collect();
        assert_eq!(
            header,
            ["MEMBER", "ADDRESS", "FILES", "BYTES", "DELETED", "RESULT"],
            "table header not where expected in:\n{self}"
        );
        lines[start + 1..]
            .iter()
            .map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                assert!(w.len() >= 6, "short table row {l:?} in:\n{self}");
                Row {
                    name: w[0].to_string(),
                    address: w[1].to_string(),
                    files: w[2].parse().expect("FILES is a number"),
                    bytes: w[3].parse().expect("BYTES is a number"),
                    deleted: w[4].parse().expect("DELETED is a number"),
                    result: w[5..].join(" "),
                }
            })
            .collect()
    }

    /// The stdout lines before the table of `n` rows.
    pub fn before_table(&self, n: usize) -> Vec<&str> {
        let lines = self.lines();
        lines[..lines.len() - n - 1].to_vec()
    }

    /// The RESULT column of `member`'s table row (`ok`, `failed: ...`).
    pub fn result_of(&self, member: &str) -> String {
        row_result(&self.stdout, member)
    }

    /// stdout parsed as exactly one JSON document.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:.2}s\n--- stdout\n{}--- stderr\n{}---",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }
}

/// The RESULT column of `member`'s row in a per-member table (`NAME ADDRESS FILES BYTES
/// DELETED RESULT`) anywhere in `out`.
pub fn row_result(out: &str, member: &str) -> String {
    let r = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(member))
        .unwrap_or_else(|| panic!("no row for {member} in:\n{out}"));
    r.split_whitespace().skip(5).collect::<Vec<_>>().join(" ")
}

/// `makuo ARGS...` on a terminal (a pty from `script(1)`): stdout and stderr both arrive in
/// the returned stdout, as the terminal showed them. `None` when `script` is missing.
pub fn makuo_on_a_terminal(args: &[String], limit: Duration) -> Option<Run> {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let mut line = quote(EXE);
    for a in args {
        line.push(' ');
        line.push_str(&quote(a));
    }
    Command::new("script").arg("--version").output().ok()?;
    let mut c = Command::new("script");
    c.args(["-qfec", &line, "/dev/null"]);
    Some(run(&mut c, limit))
}

/// Runs a command to completion, killing it (and failing) after `limit`.
pub fn run(cmd: &mut Command, limit: Duration) -> Run {
    run_input(cmd, None, limit)
}

/// As [`run`], with `input` on the command's standard input (`None`: /dev/null).
pub fn run_input(cmd: &mut Command, input: Option<&[u8]>, limit: Duration) -> Run {
    let started = Instant::now();
    let mut c = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Some(data) = input {
        let mut stdin = c.stdin.take().unwrap();
        let data = data.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let mut out = c.stdout.take().unwrap();
    let mut err = c.stderr.take().unwrap();
    let to = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let te = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = wait_child(&mut c, limit);
    if status.is_none() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let r = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: to.join().unwrap(),
        stderr: te.join().unwrap(),
        elapsed: started.elapsed(),
    };
    assert!(status.is_some(), "{cmd:?} ran longer than {limit:?}:\n{r}");
    r
}

/// Runs `makuo ARGS` with [`RUN_LIMIT`].
pub fn makuo<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Run {
    run(Command::new(EXE).args(args), RUN_LIMIT)
}

/// A `makuo` process left running (a foreground `makuo watch`): its output goes to a log
/// file; SIGTERMed, then killed, and reaped on drop.
pub struct Background {
    pub child: Child,
    pub log: PathBuf,
}

impl Background {
    /// Starts `makuo ARGS` with stdout and stderr on `log`.
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S], log: PathBuf) -> Background {
        let f = fs::File::create(&log).unwrap();
        let child = Command::new(EXE)
            .args(args)
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        Background { child, log }
    }

    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM and wait (at most `limit`); the exit status.
    /// Waits (bounded) for the process to exit by itself; `None` if it is still running.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }

    pub fn stop(&mut self, limit: Duration) -> Option<ExitStatus> {
        signal(self.child.id(), libc::SIGTERM);
        let s = wait_child(&mut self.child, limit);
        if s.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        s
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop(Duration::from_secs(5));
        }
        if std::thread::panicking() {
            eprintln!("--- {} ---\n{}", self.log.display(), self.log_text());
        }
    }
}

/// `makuo CMD --console ADDR ARGS` (ARGS split at whitespace): through a daemon.
pub fn via(console: &str, cmd: &str, args: &str) -> Run {
    let mut a = vec![cmd, "--console", console];
    a.extend(args.split_whitespace());
    makuo(&a)
}

/// Runs `cmd` and fails unless it succeeds.
pub fn sh(cmd: &[&str]) {
    let r = run(
        Command::new(cmd[0]).args(&cmd[1..]),
        Duration::from_secs(20),
    );
    assert_eq!(r.code, 0, "{cmd:?} failed: {}", r.stderr);
}
