//! Network namespaces on a private bridge (root only): hosts, loss, outages, counters.

use super::*;

/// Namespaces, a bridge and veth pairs, all named after this process and a counter (at most
/// 15 characters), deleted on drop even when the test fails.
pub struct Net {
    pub tag: String,
    pub bridge: String,
    pub namespaces: Vec<String>,
    pub veths: Vec<String>,
}

impl Net {
    /// Checks that `ip` and `nft` are installed, then makes the bridge.
    pub fn new() -> Net {
        for tool in ["ip", "nft"] {
            let ok = Command::new(tool)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok();
            assert!(ok, "{tool} is missing: install iproute2 and nftables");
        }
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // "mk" + pid in base 36 (at most 5 chars for pids up to 2^26) + counter.
        let tag = format!("mk{}{n}", base36(std::process::id()));
        let bridge = format!("{tag}br");
        assert!(bridge.len() <= 15);
        let net = Net {
            tag,
            bridge,
            namespaces: Vec::new(),
            veths: Vec::new(),
        };
        // Leftovers of a SIGKILLed earlier run that had this pid (no Drop ran) are ours.
        for i in 0..10 {
            quiet_ip(&["netns", "del", &format!("{}h{i}", net.tag)]);
            quiet_ip(&["link", "del", &format!("{}v{i}", net.tag)]);
        }
        quiet_ip(&["link", "del", &net.bridge]);
        sh(&["ip", "link", "add", &net.bridge, "type", "bridge"]);
        // Forward multicast to every port whether or not IGMP was heard.
        let _ = run(
            Command::new("ip").args([
                "link",
                "set",
                &net.bridge,
                "type",
                "bridge",
                "mcast_snooping",
                "0",
            ]),
            Duration::from_secs(10),
        );
        sh(&["ip", "link", "set", &net.bridge, "up"]);
        net
    }

    /// The namespace name of host `i`.
    pub fn ns(&self, i: usize) -> String {
        format!("{}h{i}", self.tag)
    }

    /// The interface name of host `i` inside its namespace.
    pub fn inside(&self, i: usize) -> String {
        format!("{}p{i}", self.tag)
    }

    /// Adds host `i` (namespace with lo up and one veth on the bridge, address `addr`/24).
    pub fn host(&mut self, i: usize, addr: &str) -> String {
        let inside = self.inside(i);
        self.host_with(i, &inside, &[&format!("{addr}/24")])
    }

    /// Adds host `i` whose veth is called `ifname` inside its namespace (`eth0` is safe there:
    /// the namespace has no other), with `addrs` (`198.18.x.y/24`, `fd..::n/64`; IPv6 ones
    /// `nodad`, so they are usable at once instead of tentative for a second or two).
    pub fn host_with(&mut self, i: usize, ifname: &str, addrs: &[&str]) -> String {
        let ns = self.ns(i);
        let outside = format!("{}v{i}", self.tag);
        let inside = self.inside(i);
        assert!(outside.len() <= 15 && inside.len() <= 15 && ifname.len() <= 15);
        sh(&["ip", "netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        sh(&[
            "ip", "link", "add", &outside, "type", "veth", "peer", "name", &inside,
        ]);
        self.veths.push(outside.clone());
        sh(&["ip", "link", "set", &outside, "master", &self.bridge]);
        sh(&["ip", "link", "set", &outside, "up"]);
        sh(&["ip", "link", "set", &inside, "netns", &ns]);
        let x = |args: &[&str]| {
            let mut v = vec!["ip", "netns", "exec", &ns];
            v.extend_from_slice(args);
            sh(&v);
        };
        x(&["ip", "link", "set", "lo", "up"]);
        if ifname != inside {
            x(&["ip", "link", "set", &inside, "name", ifname]);
        }
        for a in addrs {
            if a.contains(':') {
                x(&["ip", "-6", "addr", "add", a, "dev", ifname, "nodad"]);
            } else {
                x(&["ip", "addr", "add", a, "dev", ifname]);
            }
        }
        x(&["ip", "link", "set", ifname, "up"]);
        ns
    }

    /// Drops the datagrams of IPv4 group `group` arriving in `ns` (counted), as a switch that
    /// stopped forwarding the group to that port would; [`Net::undrop_group`] lifts it.
    pub fn drop_group(&self, ns: &str, group: &str) {
        self.nft_chain(ns, "nogrp", "in", "input", -10);
        self.nft(
            ns,
            &[
                "add", "rule", "inet", "nogrp", "in", "ip", "daddr", group, "counter", "drop",
            ],
        );
    }

    /// As [`Net::drop_group`], for the group's datagrams from `sources` only (an nftables
    /// address or set, such as `{ 198.18.0.1, 198.18.0.2 }`): a router that does not carry
    /// the group between two subnets.
    pub fn drop_group_from(&self, ns: &str, group: &str, sources: &str) {
        self.nft_chain(ns, "nogrp", "in", "input", -10);
        self.nft(
            ns,
            &[
                "add", "rule", "inet", "nogrp", "in", "ip", "saddr", sources, "ip", "daddr", group,
                "counter", "drop",
            ],
        );
    }

    /// Lifts [`Net::drop_group`].
    pub fn undrop_group(&self, ns: &str) {
        self.nft(ns, &["flush", "chain", "inet", "nogrp", "in"]);
    }

    /// Drops every multicast datagram arriving in `ns` (IPv4 and IPv6, counted), as a network
    /// without multicast would.
    pub fn drop_multicast(&self, ns: &str) {
        self.nft_chain(ns, "nomc", "in", "input", -10);
        for rule in [
            &["ip", "daddr", "224.0.0.0/4", "counter", "drop"][..],
            &[
                "ip6", "daddr", "ff00::/8", "meta", "l4proto", "udp", "counter", "drop",
            ][..],
        ] {
            let mut v = vec!["add", "rule", "inet", "nomc", "in"];
            v.extend_from_slice(rule);
            self.nft(ns, &v);
        }
    }

    /// Counts, from now on, the bytes `ns` sends to each IPv4 address of `to` (nftables table
    /// `inet perdst`, made afresh: counting starts at zero). Read with [`Net::bytes_to`].
    pub fn count_bytes_to(&self, ns: &str, to: &[String]) {
        let _ = Command::new("ip")
            .args([
                "netns", "exec", ns, "nft", "delete", "table", "inet", "perdst",
            ])
            .stderr(Stdio::null())
            .status();
        self.nft_chain(ns, "perdst", "out", "output", 0);
        for a in to {
            self.nft(
                ns,
                &[
                    "add", "rule", "inet", "perdst", "out", "ip", "daddr", a, "counter",
                ],
            );
        }
    }

    /// Bytes `ns` sent to each address given to [`Net::count_bytes_to`], in that order.
    pub fn bytes_to(&self, ns: &str) -> Vec<u64> {
        let l = run(
            Command::new("ip").args([
                "netns", "exec", ns, "nft", "list", "table", "inet", "perdst",
            ]),
            Duration::from_secs(10),
        );
        l.stdout
            .lines()
            .filter(|l| l.contains("counter"))
            .map(|l| {
                l.split_whitespace()
                    .skip_while(|w| *w != "bytes")
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    }

    /// Makes table `inet TABLE` in `ns` with one base chain `CHAIN` on `HOOK` (`input`,
    /// `output`) at `priority`, for the rules that follow.
    pub fn nft_chain(&self, ns: &str, table: &str, chain: &str, hook: &str, priority: i32) {
        self.nft(ns, &["add", "table", "inet", table]);
        let spec = format!("{{ type filter hook {hook} priority {priority}; }}");
        self.nft(ns, &["add", "chain", "inet", table, chain, &spec]);
    }

    /// Runs `nft ARGS` inside `ns`, failing unless it succeeds.
    pub fn nft(&self, ns: &str, args: &[&str]) {
        let mut v = vec!["ip", "netns", "exec", ns, "nft"];
        v.extend_from_slice(args);
        sh(&v);
    }

    /// Drops `pct` % of the UDP datagrams to `port` arriving in `ns` (counted).
    pub fn loss(&self, ns: &str, port: u16, pct: u32) {
        self.nft_chain(ns, "t", "in", "input", 0);
        self.nft(
            ns,
            &[
                "add",
                "rule",
                "inet",
                "t",
                "in",
                "udp",
                "dport",
                &port.to_string(),
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                &pct.to_string(),
                "counter",
                "drop",
            ],
        );
    }

    /// Bytes host `i` has put on its link so far (what its veth's bridge end received).
    pub fn sent_bytes(&self, i: usize) -> u64 {
        let p = format!("/sys/class/net/{}v{i}/statistics/rx_bytes", self.tag);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Packets counted by the first `counter` of table `inet TABLE` in `ns`.
    pub fn counted(&self, ns: &str, table: &str) -> u64 {
        first_counter(ns, &["list", "table", "inet", table])
    }

    /// Packets counted by the rules of `ns`'s ruleset (the first `counter`).
    pub fn dropped(&self, ns: &str) -> u64 {
        first_counter(ns, &["list", "ruleset"])
    }
}

/// A UDP socket on 127.0.0.1 that can send to the cluster's group (multicast interface set to
/// loopback), as a forger on the wire would.
pub fn raw_sender() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let lo = std::net::Ipv4Addr::LOCALHOST;
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&std::net::SocketAddrV4::new(lo, 0).into()).unwrap();
    s.set_multicast_if_v4(&lo).unwrap();
    s.set_multicast_ttl_v4(1).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s.into()
}

/// The packets of the first `counter` in what `nft ARGS` prints inside namespace `ns` (0 when
/// there is none).
fn first_counter(ns: &str, args: &[&str]) -> u64 {
    let l = run(
        Command::new("ip")
            .args(["netns", "exec", ns, "nft"])
            .args(args),
        Duration::from_secs(10),
    );
    l.stdout
        .split_whitespace()
        .skip_while(|w| *w != "packets")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Resident set size of process `pid` and its peak (`VmRSS`, `VmHWM`), in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
            * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs `ip ARGS`, ignoring failure and output.
pub fn quiet_ip(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            quiet_ip(&["netns", "del", ns]);
        }
        for v in &self.veths {
            quiet_ip(&["link", "del", v]);
        }
        quiet_ip(&["link", "del", &self.bridge]);
    }
}

pub fn base36(mut n: u32) -> String {
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut s = Vec::new();
    loop {
        s.push(digits[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    s.reverse();
    String::from_utf8(s).unwrap()
}
