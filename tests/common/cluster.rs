//! Daemons and clusters of them, on loopback or in network namespaces.

use super::*;

/// One daemon process, restartable with the same base, state dir, name, console port and
/// flags.
pub struct Daemon {
    pub name: String,
    pub base: PathBuf,
    pub state: PathBuf,
    pub console: u16,
    pub log: PathBuf,
    /// Runs the daemon inside a namespace: `ip netns exec NS`.
    pub netns: Option<String>,
    /// Everything after `makuo daemon`.
    pub args: Vec<String>,
    pub child: Option<Child>,
    /// A sending member added to a cluster of receivers (not one of [`Cluster::receivers`]).
    pub sender: bool,
    /// A command the daemon runs under (e.g. `faketime -f +120s`); empty: none.
    pub wrap: Vec<String>,
    /// Started as `PROGRAM ARGS` instead of `makuo daemon ARGS` (e.g. a `makuosan` symlink).
    pub program: Option<PathBuf>,
    /// Extra environment variables of the daemon process.
    pub env: Vec<(String, String)>,
}

impl Daemon {
    /// `makuo WHAT...`, inside the daemon's namespace if it has one.
    pub fn command(&self, what: &[&str]) -> Command {
        let mut argv: Vec<&str> = Vec::new();
        if let Some(ns) = &self.netns {
            argv.extend(["ip", "netns", "exec", ns]);
        }
        argv.extend(self.wrap.iter().map(String::as_str));
        argv.push(EXE);
        argv.extend_from_slice(what);
        let mut c = Command::new(argv[0]);
        c.args(&argv[1..]);
        c
    }

    /// Starts the process (stdout and stderr appended to the log) without waiting for it.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut c = match &self.program {
            Some(p) => Command::new(p),
            None => self.command(&["daemon"]),
        };
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c.args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        self.child = Some(c.spawn().expect("cannot start makuo daemon"));
    }

    /// Starts the daemon and waits until its console answers.
    pub fn start(&mut self) {
        self.spawn();
        self.wait_up();
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon not running").id()
    }

    pub fn signal(&self, sig: libc::c_int) {
        signal(self.pid(), sig);
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Waits (bounded) for the process to exit by itself.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let c = self.child.as_mut().expect("daemon not running");
        let s = wait_child(c, limit);
        if s.is_some() {
            self.child = None;
        }
        s
    }

    /// Everything the daemon wrote to stdout and stderr so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value after `flag` in the daemon's arguments.
    fn arg_after(&self, flag: &str) -> Option<&str> {
        let i = self.args.iter().position(|a| a == flag)?;
        self.args.get(i + 1).map(String::as_str)
    }

    /// The address the TCP console listens on (`--console-addr` or `-l`, default 127.0.0.1).
    pub fn console_host(&self) -> String {
        self.arg_after("--console-addr")
            .or_else(|| self.arg_after("-l"))
            .unwrap_or("127.0.0.1")
            .to_string()
    }

    /// The console password (first line of the `-K` file), if the daemon has one.
    pub fn password(&self) -> Option<String> {
        let f = self.arg_after("-K")?;
        let text = fs::read_to_string(f).unwrap_or_default();
        Some(text.lines().next().unwrap_or("").to_string())
    }

    /// Waits until the console answers (`alive`), failing if the daemon exits.
    pub fn wait_up(&mut self) {
        let port = self.console;
        let host = self.console_host();
        let password = self.password();
        let netns = self.netns.is_some();
        let addr = self.console_addr();
        let mut probe = self.command(&["status", "--console", &addr]);
        if let Some(k) = self.arg_after("-K") {
            probe.args(["-K", k]);
        }
        let name = self.name.clone();
        let log = self.log.clone();
        let child = self.child.as_mut().unwrap();
        wait_for(
            &format!("daemon {name} to answer on its console"),
            Duration::from_secs(10),
            || {
                if let Ok(Some(s)) = child.try_wait() {
                    panic!(
                        "daemon {name} exited ({s}) at start:\n{}",
                        fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                if netns {
                    let r = run(&mut probe, Duration::from_secs(10));
                    (r.code == 0).then_some(())
                } else {
                    let s = TcpStream::connect((host.as_str(), port)).ok()?;
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                    let mut c = Console {
                        r: BufReader::new(s.try_clone().ok()?),
                        w: s,
                    };
                    if let Some(p) = &password {
                        (c.try_cmd(&format!("password \"{p}\""))? == "ok").then_some(())?;
                    }
                    (c.try_cmd("alive")? == "ok").then_some(())
                }
            },
        );
    }

    /// SIGCONT and SIGTERM, then waits (bounded) for the exit; SIGKILL if it did not come.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut c = self.child.take()?;
        signal(c.id(), libc::SIGCONT);
        signal(c.id(), libc::SIGTERM);
        let s = wait_child(&mut c, Duration::from_secs(5));
        if s.is_none() {
            let _ = c.kill();
            let _ = c.wait();
        }
        s
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new TCP console session (loopback daemons only), past the password if there is one.
    pub fn console(&self) -> Console {
        assert!(self.netns.is_none());
        let mut c = Console::connect_to(&self.console_host(), self.console);
        if let Some(p) = self.password() {
            let (lines, last) = c.cmd(&format!("password \"{p}\""));
            assert_eq!(last, "ok", "{}: password refused: {lines:?}", self.name);
        }
        c
    }

    /// `HOST:PORT` of the TCP console (`[HOST]:PORT` for IPv6).
    pub fn console_addr(&self) -> String {
        let h = self.console_host();
        if h.contains(':') {
            format!("[{h}]:{}", self.console)
        } else {
            format!("{h}:{}", self.console)
        }
    }

    /// One command in a session of its own: the lines before the final one, and that one.
    pub fn cmd(&self, line: &str) -> (Vec<String>, String) {
        let mut c = self.console();
        let r = c.cmd(line);
        c.send("quit\n");
        r
    }

    /// `status` on the console, which must end with `ok`.
    pub fn status(&self) -> Status {
        let (lines, last) = self.cmd("status");
        assert_eq!(
            last, "ok",
            "{}: status answered {last:?}: {lines:?}",
            self.name
        );
        Status::parse(lines)
    }

    /// The member's unicast reply address, from its start-up log line.
    pub fn reply_addr(&self) -> std::net::SocketAddr {
        let log = self.log_text();
        let at = log
            .find(", reply ")
            .expect("start-up line names the reply address");
        let rest = &log[at + 8..];
        rest[..rest.find(',').unwrap()].parse().unwrap()
    }

    /// Runs `makuo sync --console THIS -r .` (plus `extra`).
    pub fn sync(&self, extra: &[&str]) -> Run {
        let addr = self.console_addr();
        let mut args = vec!["sync", "--console", &addr, "-r"];
        args.extend_from_slice(extra);
        args.push(".");
        run(&mut self.command(&args), RUN_LIMIT)
    }

    /// `makuo members --console THIS` (inside the daemon's namespace if it has one).
    pub fn members(&self, extra: &[&str]) -> Run {
        let addr = self.console_addr();
        let mut args = vec!["members", "--console", &addr];
        args.extend_from_slice(extra);
        run(&mut self.command(&args), RUN_LIMIT)
    }

    /// Names of the members this daemon lists as live, in order, from `members`.
    pub fn live_members(&self) -> Vec<String> {
        let (lines, last) = self.cmd("members");
        assert_eq!(last, "ok", "members: {lines:?}");
        lines
            .iter()
            .filter_map(|l| {
                let w: Vec<&str> = l.split_whitespace().collect();
                (w.len() >= 3 && (w[2] == "live" || w[2] == "self")).then(|| w[0].to_string())
            })
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Daemons sharing a random group and port, each in its own dirs under one temp dir, and a
/// source tree `src` for direct-mode pushes.
pub struct Cluster {
    // Field order matters: daemons are stopped before the temp dir is removed.
    pub daemons: Vec<Daemon>,
    pub group: String,
    pub port: u16,
    /// The cluster key every daemon and push uses (`None`: unkeyed).
    pub key: Option<PathBuf>,
    /// Source tree of direct-mode pushes ([`Cluster::direct`]); starts empty.
    pub src: PathBuf,
    pub tmp: tempfile::TempDir,
}

impl Cluster {
    /// An empty keyed cluster: a fresh key from `makuo keygen`, no daemon yet.
    pub fn new() -> Cluster {
        let mut c = Cluster::unkeyed();
        c.key = Some(c.keygen("cluster.key"));
        c
    }

    /// An empty cluster without a key: its daemons and direct pushes get `--insecure`.
    pub fn unkeyed() -> Cluster {
        let tmp = tempfile::Builder::new()
            .prefix("makuo-itest-")
            .tempdir()
            .unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        Cluster {
            daemons: Vec::new(),
            group: random_group(),
            port: free_udp_port(),
            key: None,
            src,
            tmp,
        }
    }

    /// A keyed cluster of `n` receiving daemons `m1..mN` (`--no-fsync`, empty bases), with
    /// [`small_site`] in `src`. Returns once every daemon's console answers.
    pub fn start(n: usize) -> Cluster {
        let mut c = Cluster::new();
        small_site(&c.src);
        for i in 1..=n {
            c.add(&format!("m{i}"), &["--no-fsync"]);
        }
        c
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// A new key file made by `makuo keygen FILE`.
    pub fn keygen(&self, name: &str) -> PathBuf {
        let p = self.path(name);
        let r = makuo(&[std::ffi::OsStr::new("keygen"), p.as_os_str()]);
        assert_eq!(r.code, 0, "keygen: {r}");
        p
    }

    /// `-k FILE` for the cluster key (`--insecure` when unkeyed).
    pub fn key_args(&self) -> Vec<String> {
        keys_args(self.key.as_deref().into_iter())
    }

    /// A daemon named `name` on loopback with the cluster key and `extra` flags, its base
    /// `NAME/base` (created), not started.
    pub fn daemon_on_loopback(&self, name: &str, extra: &[&str]) -> Daemon {
        let keys: Vec<&Path> = self.key.as_deref().into_iter().collect();
        self.daemon_with_keys(name, &keys, extra)
    }

    /// As [`Cluster::daemon_on_loopback`], with these keys instead of the cluster's.
    pub fn daemon_with_keys(&self, name: &str, keys: &[&Path], extra: &[&str]) -> Daemon {
        let base = self.path(&format!("{name}/base"));
        fs::create_dir_all(&base).unwrap();
        let mut args = keys_args(keys.iter().copied());
        args.extend(extra.iter().map(|s| s.to_string()));
        self.daemon_at(name, base, free_tcp_port(), None, "127.0.0.1", args)
    }

    /// A daemon with every placement spelled out, not started: base, console port, namespace,
    /// interface, and every flag beyond the cluster's own (keys included).
    pub fn daemon_at(
        &self,
        name: &str,
        base: PathBuf,
        console: u16,
        netns: Option<String>,
        iface: &str,
        more: Vec<String>,
    ) -> Daemon {
        let state = self.path(&format!("{name}/state"));
        let mut args: Vec<String> = [
            "-n",
            "-i",
            iface,
            "-m",
            &self.group,
            "-p",
            &self.port.to_string(),
            "--name",
            name,
            "-P",
            &console.to_string(),
            "-d",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push("-b".into());
        args.push(base.to_string_lossy().into_owned());
        args.push("--state-dir".into());
        args.push(state.to_string_lossy().into_owned());
        args.extend(more);
        Daemon {
            name: name.to_string(),
            base,
            state,
            console,
            log: self.path(&format!("{name}.log")),
            netns,
            args,
            child: None,
            sender: false,
            wrap: Vec::new(),
            program: None,
            env: Vec::new(),
        }
    }

    /// A daemon configured by a file alone: `NAME.conf` holds its base (`NAME/base`, created),
    /// state dir, name, console port, the cluster's group, port, interface and key, `-n`, log
    /// level 2, [`FAST`] timings, and then `more` (TOML lines); its arguments are `--config
    /// FILE` and `args`. Not started.
    pub fn daemon_from_config(&self, name: &str, more: &str, args: &[&str]) -> Daemon {
        let base = self.path(&format!("{name}/base"));
        fs::create_dir_all(&base).unwrap();
        let state = self.path(&format!("{name}/state"));
        let console = free_tcp_port();
        let key = match &self.key {
            Some(k) => format!("key = [{:?}]", k.to_string_lossy()),
            None => "insecure = true".into(),
        };
        let text = format!(
            "base = {:?}\nstate_dir = {:?}\nname = {name:?}\nconsole_port = {console}\n\
             group = {:?}\nport = {}\ninterface = \"127.0.0.1\"\n{key}\nforeground = true\n\
             loglevel = 2\nheartbeat = 200\nmember_timeout = 1500\n{more}\n",
            base.to_string_lossy(),
            state.to_string_lossy(),
            self.group,
            self.port,
        );
        let conf = self.path(&format!("{name}.conf"));
        fs::write(&conf, text).unwrap();
        let mut a = vec!["--config".to_string(), conf.to_string_lossy().into_owned()];
        a.extend(args.iter().map(|s| s.to_string()));
        Daemon {
            name: name.to_string(),
            base,
            state,
            console,
            log: self.path(&format!("{name}.log")),
            netns: None,
            args: a,
            child: None,
            sender: false,
            wrap: Vec::new(),
            program: None,
            env: Vec::new(),
        }
    }

    /// Starts `d`, waits for its console and adds it to the cluster; returns its index.
    pub fn push_daemon(&mut self, mut d: Daemon) -> usize {
        d.start();
        self.daemons.push(d);
        self.daemons.len() - 1
    }

    /// Starts one keyed daemon (`--no-fsync` and `more`) in each namespace of `hosts`
    /// (`(i, namespace)`, host `i` using interface `iface(i)`, console port 5000 inside its
    /// namespace): host 0 is the sending daemon `s0` (base: the source) when `sender`, every
    /// other host `r{i}` with an empty base `r{i}/base`.
    pub fn daemons_in(
        &mut self,
        hosts: &[(usize, String)],
        iface: impl Fn(usize) -> String,
        sender: bool,
        more: &[String],
    ) {
        for (i, ns) in hosts {
            let s0 = *i == 0 && sender;
            let name = if s0 {
                "s0".to_string()
            } else {
                format!("r{i}")
            };
            let base = if s0 {
                self.src.clone()
            } else {
                let b = self.path(&format!("{name}/base"));
                fs::create_dir_all(&b).unwrap();
                b
            };
            let mut args = self.key_args();
            args.push("--no-fsync".into());
            args.extend(more.iter().cloned());
            let mut d = self.daemon_at(&name, base, 5000, Some(ns.clone()), &iface(*i), args);
            d.sender = s0;
            self.push_daemon(d);
        }
    }

    /// Starts a keyed daemon named `name` on loopback with `extra` flags and waits for its
    /// console; returns its index.
    pub fn add(&mut self, name: &str, extra: &[&str]) -> usize {
        let d = self.daemon_on_loopback(name, extra);
        self.push_daemon(d)
    }

    /// Starts a daemon named `name` on loopback with these keys (not the cluster's) and
    /// `extra` flags, and waits for its console; returns its index.
    pub fn add_with_keys(&mut self, name: &str, keys: &[&Path], extra: &[&str]) -> usize {
        let d = self.daemon_with_keys(name, keys, extra);
        self.push_daemon(d)
    }

    /// Adds a sending daemon on `base` (not one of [`Cluster::receivers`]); returns its index.
    pub fn add_sender(&mut self, name: &str, base: &Path, extra: &[&str]) -> usize {
        let mut args = self.key_args();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut d = self.daemon_at(
            name,
            base.to_path_buf(),
            free_tcp_port(),
            None,
            "127.0.0.1",
            args,
        );
        d.sender = true;
        self.push_daemon(d)
    }

    pub fn daemon(&self, name: &str) -> &Daemon {
        self.daemons
            .iter()
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("no daemon {name}"))
    }

    /// Base directory of member `name`.
    pub fn base(&self, name: &str) -> &Path {
        &self.daemon(name).base
    }

    /// The receiving members (not a sending daemon added with [`Cluster::add_sender`]).
    pub fn receivers(&self) -> Vec<&Daemon> {
        self.daemons.iter().filter(|d| !d.sender).collect()
    }

    pub fn receiver_names(&self) -> BTreeSet<String> {
        self.receivers().iter().map(|d| d.name.clone()).collect()
    }

    /// Waits until daemon `i` lists every daemon of the cluster as live.
    pub fn wait_converged(&self, i: usize) {
        let mut want: Vec<String> = self.daemons.iter().map(|d| d.name.clone()).collect();
        want.sort();
        wait_for(
            &format!("{} to see all of {want:?}", self.daemons[i].name),
            Duration::from_secs(10),
            || {
                let mut got = self.daemons[i].live_members();
                got.sort();
                (got == want).then_some(())
            },
        );
    }

    /// `-m GROUP -p PORT --interface 127.0.0.1` (the long form: in `sync` and `watch`, `-i`
    /// is rsync's `--itemize-changes`).
    pub fn net(&self) -> Vec<String> {
        vec![
            "-m".into(),
            self.group.clone(),
            "-p".into(),
            self.port.to_string(),
            "--interface".into(),
            "127.0.0.1".into(),
        ]
    }

    /// The group as a socket address.
    pub fn group_addr(&self) -> std::net::SocketAddr {
        format!("{}:{}", self.group, self.port).parse().unwrap()
    }

    /// `makuo CMD --direct -b SRC -m GROUP -p PORT --interface IFACE [-k KEY] ARGS...` inside
    /// namespace `ns`.
    pub fn direct_in(&self, ns: &str, iface: &str, cmd: &str, args: &[&str]) -> Run {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, EXE, cmd, "--direct", "-b"])
            .arg(&self.src)
            .args(["-m", &self.group, "-p", &self.port.to_string()])
            .args(["--interface", iface])
            .args(self.key_args())
            .args(args);
        run(&mut c, Duration::from_secs(120))
    }

    /// `makuo CMD --direct -b SRC -m GROUP -p PORT --interface 127.0.0.1 [-k KEY] ARGS...`.
    pub fn direct(&self, cmd: &str, args: &[&str]) -> Run {
        self.direct_from(&self.src, cmd, args)
    }

    /// As [`Cluster::direct`], from another source tree.
    pub fn direct_from(&self, src: &Path, cmd: &str, args: &[&str]) -> Run {
        let keys: Vec<&Path> = self.key.as_deref().into_iter().collect();
        self.direct_keys(src, &keys, cmd, args)
    }

    /// As [`Cluster::direct_from`], with these keys instead of the cluster's.
    pub fn direct_keys(&self, src: &Path, keys: &[&Path], cmd: &str, args: &[&str]) -> Run {
        let mut a: Vec<String> = vec![cmd.into(), "--direct".into(), "-b".into()];
        a.push(src.to_string_lossy().into_owned());
        a.extend(self.net());
        a.extend(keys_args(keys.iter().copied()));
        a.extend(args.iter().map(|s| s.to_string()));
        makuo(&a)
    }

    /// `makuo sync --direct ... ARGS` (ARGS split at whitespace, never through a shell).
    pub fn sync(&self, args: &str) -> Run {
        self.direct("sync", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// `makuo check --direct ... ARGS`.
    pub fn check(&self, args: &str) -> Run {
        self.direct("check", &args.split_whitespace().collect::<Vec<_>>())
    }

    /// A first full sync, checked: every receiver ends identical to SRC.
    pub fn initial_sync(&self) {
        let r = self.sync("-r .");
        assert_eq!(r.code, 0, "initial sync failed:\n{r}");
        self.assert_all_identical();
    }

    pub fn assert_all_identical(&self) {
        let want = fingerprint(&self.src);
        for d in self.receivers() {
            assert_same(&want, &fingerprint(&d.base), &d.name);
        }
    }

    /// Fingerprints of every receiver, by name.
    pub fn snapshots(&self) -> BTreeMap<String, Tree> {
        self.receivers()
            .iter()
            .map(|d| (d.name.clone(), fingerprint(&d.base)))
            .collect()
    }
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Makes directory `dir` unwritable even for root (`chattr +i`; a plain `chmod 555` when not
/// root, which binds everyone else), and undoes it on drop so the temp dir can be removed.
pub struct Unwritable(std::path::PathBuf);

impl Unwritable {
    pub fn new(dir: &std::path::Path) -> Unwritable {
        if is_root() {
            sh(&["chattr", "+i", dir.to_str().unwrap()]);
        } else {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
        }
        Unwritable(dir.to_path_buf())
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        if is_root() {
            let _ = std::process::Command::new("chattr")
                .args(["-i", self.0.to_str().unwrap()])
                .status();
        } else {
            use std::os::unix::fs::PermissionsExt;
            let _ = fs::set_permissions(&self.0, fs::Permissions::from_mode(0o755));
        }
    }
}

/// `-k FILE` for each key; `--insecure` when there is none (makuo refuses to run a daemon or
/// a direct push without a key unless told so).
pub fn keys_args<'a>(keys: impl Iterator<Item = &'a Path>) -> Vec<String> {
    let args: Vec<String> = keys
        .flat_map(|k| ["-k".to_string(), k.to_string_lossy().into_owned()])
        .collect();
    if args.is_empty() {
        vec!["--insecure".to_string()]
    } else {
        args
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            d.stop();
        }
        if std::thread::panicking() {
            for d in &self.daemons {
                let log = d.log_text();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("---- log of daemon {} (last 40 lines) ----", d.name);
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}
