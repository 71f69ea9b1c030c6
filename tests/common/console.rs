//! A console client and the `status` parser.

use super::*;

/// A plain TCP console session.
pub struct Console {
    pub(crate) r: BufReader<TcpStream>,
    pub(crate) w: TcpStream,
}

impl Console {
    pub fn connect(port: u16) -> Console {
        Console::connect_to("127.0.0.1", port)
    }

    /// A session with the console on `host` (an IPv4 or IPv6 address) and `port`.
    pub fn connect_to(host: &str, port: u16) -> Console {
        let s = TcpStream::connect((host, port))
            .unwrap_or_else(|e| panic!("console {host} port {port}: {e}"));
        s.set_read_timeout(Some(RUN_LIMIT)).unwrap();
        Console {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Everything until the daemon closes the connection.
    pub fn rest(&mut self) -> String {
        let mut s = String::new();
        let _ = self.r.read_to_string(&mut s);
        s
    }

    pub fn send(&mut self, text: &str) {
        self.w.write_all(text.as_bytes()).unwrap();
    }

    /// One line, without its newline; `Ok(None)` at EOF.
    fn read_line(&mut self) -> std::io::Result<Option<String>> {
        let mut s = String::new();
        Ok(match self.r.read_line(&mut s)? {
            0 => None,
            _ => Some(s.trim_end_matches(['\r', '\n']).to_string()),
        })
    }

    /// One line, without its newline; `None` at EOF.
    pub fn line(&mut self) -> Option<String> {
        self.read_line()
            .unwrap_or_else(|e| panic!("console read: {e}"))
    }

    /// The lines of one command: those before the final line, and the final line (`ok` or
    /// `error: ...`); `Err` says why the reply ended early (a read error, or EOF).
    fn read_reply(&mut self) -> Result<(Vec<String>, String), String> {
        let mut lines = Vec::new();
        loop {
            let l = self
                .read_line()
                .map_err(|e| format!("console read: {e}"))?
                .ok_or_else(|| format!("console closed mid-reply after {lines:?}"))?;
            if l == "ok" || l.starts_with("error:") {
                return Ok((lines, l));
            }
            lines.push(l);
        }
    }

    /// Reads the lines of one command: those before the final line, and the final line
    /// (`ok` or `error: ...`).
    pub fn reply(&mut self) -> (Vec<String>, String) {
        self.read_reply().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The final line of one command, or `None` on any error or EOF: for probes, where a
    /// connection lost mid-reply means "not yet", and whoever probes looks at the daemon.
    pub fn try_cmd(&mut self, line: &str) -> Option<String> {
        self.w.write_all(format!("{line}\n").as_bytes()).ok()?;
        self.read_reply().ok().map(|(_, last)| last)
    }

    pub fn cmd(&mut self, line: &str) -> (Vec<String>, String) {
        self.send(&format!("{line}\n"));
        self.reply()
    }
}

/// The counters of a `status` answer.
#[derive(Debug)]
pub struct Status {
    pub lines: Vec<String>,
    /// Numbers by the word before them: `dropped`, `auth`, `opened`, `bad-tag`, `unsealed`,
    /// `unknown-key`, `replayed`, `stale`, `received`, ...
    pub n: BTreeMap<String, u64>,
}

impl Status {
    pub fn parse(lines: Vec<String>) -> Self {
        let mut n = BTreeMap::new();
        for l in &lines {
            let words: Vec<&str> = l
                .split([' ', '(', ')', ','])
                .filter(|w| !w.is_empty())
                .collect();
            for pair in words.windows(2) {
                if let Ok(v) = pair[1].parse::<u64>() {
                    n.entry(pair[0].to_string()).or_insert(v);
                }
            }
        }
        Self { lines, n }
    }

    pub fn get(&self, k: &str) -> u64 {
        *self
            .n
            .get(k)
            .unwrap_or_else(|| panic!("no {k} in status {:?}", self.lines))
    }

    pub fn line(&self, start: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no {start} line in {:?}", self.lines))
    }
}
