#!/usr/bin/env python3
"""Helpers for bench/run (Python 3 standard library only).

Workload generation and byte-for-byte verification come from shared/bench/peers.sh;
the per-cell bookkeeping is new. The raw-mcast tool itself is examples/rawmc.rs (a Python
sender reading its files inside the timed window was slower than makuo); the Python copy
here only runs the paced loss probe, where speed does not matter.

    helper.py gen-big PATH MIB SEED
    helper.py gen-small ROOT NFILES SEED          -> prints payload bytes
    helper.py gen-update ROOT PCT SEED            -> prints "files bytes"
    helper.py manifest ROOT                       -> prints "digest files bytes"
    helper.py layout SRCROOT ITEM [BASEROOT] > L  -> raw-mcast layout (files that differ from BASEROOT)
    helper.py rawmc-send GROUP PORT IFADDR SRCROOT LAYOUT          (the loss probe)
    helper.py rawmc-recv GROUP PORT IFADDR READYFILE DESTROOT LAYOUT TIMEOUT
    helper.py check-result RESULT.json N          -> "ok" or what is wrong with makuo's --json
    helper.py outage MS PERIOD START MAXSECS IFNAME (in the deaf receiver's namespace)
    helper.py cpu-busy SECONDS
    helper.py median X...
"""
import hashlib
import json
import os
import random
import socket
import sys
import time

T0 = 1600000000          # fixed mtime of every generated file/dir
T1 = T0 + 86400          # mtime of files changed by the update workload
EXTS = ['html', 'html', 'html', 'css', 'js', 'png', 'jpg', 'gif', 'txt', 'json']


# ------------------------------------------------------------------ workloads
def gen_big(path, mib, seed):
    r = random.Random(int(seed))
    with open(path, 'wb') as f:
        for _ in range(int(mib)):
            f.write(r.randbytes(1 << 20))
    os.chmod(path, 0o644)
    os.utime(path, (T0, T0))


def gen_small(root, nfiles, seed):
    """a docroot-like tree: 10 sections x 10 subsections x 8 leaves, 1-16 KiB files"""
    r = random.Random(int(seed) + 1)
    dirs = set()
    total = 0
    for k in range(int(nfiles)):
        depth = r.choice((1, 2, 2, 3, 3, 3))
        parts = [f"sec{r.randrange(10):02d}", f"sub{r.randrange(10):02d}", f"leaf{r.randrange(8)}"][:depth]
        d = os.path.join(root, *parts)
        if d not in dirs:
            os.makedirs(d, exist_ok=True)
            dirs.add(d)
        size = r.randint(1024, 16384)
        p = os.path.join(d, f"f{k:06d}.{r.choice(EXTS)}")
        with open(p, 'wb') as f:
            f.write(r.randbytes(size))
        os.chmod(p, 0o644)
        os.utime(p, (T0, T0))
        total += size
    for dp, _dn, _fn in os.walk(root, topdown=False):
        os.chmod(dp, 0o755)
        os.utime(dp, (T0, T0))
    print(total)


def gen_update(root, pct, seed):
    """root is a copy (cp -a) of the small tree; rewrite pct% of its files"""
    files = []
    for dp, dn, fn in os.walk(root):
        dn.sort()
        for f in sorted(fn):
            files.append(os.path.join(dp, f))
    files.sort()
    r = random.Random(int(seed) + 2)
    k = max(1, round(len(files) * float(pct) / 100.0))
    changed = 0
    for p in sorted(r.sample(files, k)):
        st = os.stat(os.path.dirname(p))
        size = r.randint(1024, 16384)
        with open(p, 'wb') as f:
            f.write(r.randbytes(size))
        os.utime(p, (T1, T1))
        os.utime(os.path.dirname(p), (st.st_atime, st.st_mtime))
        changed += size
    print(k, changed)


def manifest(root):
    """digest over (type, relative path, size, sha256) of everything below root"""
    h = hashlib.sha256()
    nf = nb = 0
    for dp, dn, fn in os.walk(root):
        dn.sort()
        rel = os.path.relpath(dp, root)
        h.update(f"d {rel}\n".encode())
        for f in sorted(fn):
            p = os.path.join(dp, f)
            if os.path.islink(p):
                h.update(f"l {rel}/{f} {os.readlink(p)}\n".encode())
                continue
            fh = hashlib.sha256()
            with open(p, 'rb') as fp:
                while True:
                    b = fp.read(1 << 20)
                    if not b:
                        break
                    fh.update(b)
            sz = os.path.getsize(p)
            h.update(f"f {rel}/{f} {sz} {fh.hexdigest()}\n".encode())
            nf += 1
            nb += sz
    print(h.hexdigest(), nf, nb)


def treediff(want, got, limit=4):
    """one line naming the first differences between two trees (for failure notes)"""
    def walk(root):
        out = {}
        for dp, dn, fn in os.walk(root):
            rel = os.path.relpath(dp, root)
            out[rel] = 'd'
            for f in fn:
                out[os.path.normpath(os.path.join(rel, f))] = os.path.join(dp, f)
        return out
    a, b = walk(want), walk(got)
    diffs = []
    for k in sorted(set(a) | set(b)):
        if k not in b:
            diffs.append(f"missing {k}")
        elif k not in a:
            diffs.append(f"extra {k}")
        elif (a[k] == 'd') != (b[k] == 'd'):
            diffs.append(f"type {k}")
        elif a[k] != 'd':
            sa, sb = os.path.getsize(a[k]), os.path.getsize(b[k])
            if sa != sb:
                diffs.append(f"size {k} {sb}!={sa}")
            else:
                with open(a[k], 'rb') as x, open(b[k], 'rb') as y:
                    da, db = x.read(), y.read()
                if da != db:
                    first = next(i for i in range(len(da)) if da[i] != db[i])
                    zero = db[first:].count(0) == len(db) - first
                    diffs.append(f"content {k} from byte {first}{' (zeros)' if zero else ''}")
    print(f"{len(diffs)} differences: " + ", ".join(diffs[:int(limit)]) + (" ..." if len(diffs) > int(limit) else ""))


# ------------------------------------------------------------------ raw-mcast (loss probe)
# The same stream as examples/rawmc.rs (bench/run's raw-mcast tool): the workload's file contents, concatenated in a fixed order, multicast
# as plain UDP datagrams of 1472 bytes (a 1500-byte IP packet), 44 of them per send()
# with UDP GSO; no application header, no reliability. Each receiver knows the layout
# (paths and sizes) out of band, writes the stream into temporary files and renames
# each into place when complete. A lost datagram shifts or truncates the stream: the
# result is then wrong, which the runner reports (ok=false) instead of hiding.
UDP_SEGMENT, UDP_GRO = 103, 104   # linux/udp.h
SO_RCVBUFFORCE, SO_SNDBUFFORCE = 33, 32
DGRAM = 1472
GSO = 44
END = b'END'


def layout(srcroot, item, baseroot=None):
    """JSON layout of what raw-mcast sends: every file under SRCROOT/ITEM (sorted), or
    only those that differ (size or bytes) from BASEROOT/ITEM when given"""
    files = []
    top = os.path.join(srcroot, item)
    if os.path.isfile(top):
        cands = [item]
    else:
        cands = []
        for dp, dn, fn in os.walk(top):
            dn.sort()
            for f in sorted(fn):
                cands.append(os.path.relpath(os.path.join(dp, f), srcroot))
    for rel in cands:
        p = os.path.join(srcroot, rel)
        sz = os.path.getsize(p)
        if baseroot is not None:
            q = os.path.join(baseroot, rel)
            if os.path.isfile(q) and os.path.getsize(q) == sz:
                with open(p, 'rb') as a, open(q, 'rb') as b:
                    if a.read() == b.read():
                        continue
        files.append([rel, sz])
    json.dump({"files": files, "bytes": sum(s for _, s in files)}, sys.stdout)
    print()


def _sock_buf(s, force_opt, opt, size):
    try:
        s.setsockopt(socket.SOL_SOCKET, force_opt, size)   # root: past rmem_max/wmem_max
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, opt, size)


def rawmc_send(group, port, ifaddr, srcroot, layoutfile):
    lay = json.load(open(layoutfile))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ifaddr))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 0)
    _sock_buf(s, SO_SNDBUFFORCE, socket.SO_SNDBUF, 4 << 20)
    s.connect((group, int(port)))
    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, DGRAM)
    per = DGRAM * GSO
    buf = bytearray()
    sent = 0
    t0 = time.time()
    for rel, _size in lay["files"]:
        with open(os.path.join(srcroot, rel), 'rb') as f:
            buf += f.read()
        while len(buf) >= per:
            s.send(memoryview(buf)[:per])
            del buf[:per]
            sent += per
    while buf:   # the tail: whole datagrams, the last one short
        k = min(len(buf), per)
        s.send(memoryview(buf)[:k])
        del buf[:k]
        sent += k
    t1 = time.time()
    s.setsockopt(socket.IPPROTO_UDP, UDP_SEGMENT, 0)
    # END markers only matter when datagrams were lost (receivers stop on the byte count)
    for _ in range(20):
        s.send(END)
        time.sleep(0.01)
    print(json.dumps({"bytes": sent, "t0": t0, "t1": t1}))


def rawmc_recv(group, port, ifaddr, readyfile, destroot, layoutfile, timeout):
    lay = json.load(open(layoutfile))
    files = lay["files"]
    expect = lay["bytes"]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _sock_buf(s, SO_RCVBUFFORCE, socket.SO_RCVBUF, 64 << 20)
    s.setsockopt(socket.IPPROTO_UDP, UDP_GRO, 1)
    s.bind((group, int(port)))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(group) + socket.inet_aton(ifaddr))
    s.settimeout(float(timeout))
    open(readyfile, 'w').close()
    made = set()
    idx = 0            # file being written
    left = 0           # bytes still missing in it
    out = None
    tmp = dst = None
    got = 0
    complete = 0

    def open_next():
        nonlocal idx, left, out, tmp, dst
        rel, size = files[idx]
        dst = os.path.join(destroot, rel)
        d = os.path.dirname(dst)
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        tmp = os.path.join(d, ".rawmc." + os.path.basename(dst))
        out = open(tmp, 'wb')
        left = size

    def finish():
        nonlocal idx, out, complete
        out.close()
        os.rename(tmp, dst)
        out = None
        idx += 1
        complete += 1

    # empty files at the head of the layout need no bytes
    while idx < len(files) and files[idx][1] == 0:
        open_next(); finish()
    buf = bytearray(1 << 17)
    mv = memoryview(buf)
    recv = s.recv_into
    status = "complete"
    try:
        while idx < len(files):
            k = recv(buf)
            if k == 3 and buf[:3] == END:
                status = "incomplete (END before all bytes)"
                break
            got += k
            off = 0
            while off < k and idx < len(files):
                if out is None:
                    open_next()
                n = min(left, k - off)
                out.write(mv[off:off + n])
                off += n
                left -= n
                if left == 0:
                    finish()
                    while idx < len(files) and files[idx][1] == 0:
                        open_next(); finish()
            if off < k:
                status = "incomplete (surplus bytes)"
                break
    except socket.timeout:
        status = f"incomplete (no datagram for {timeout} s)"
    if out is not None:   # a torn file stays under its temporary name: the verification sees it
        out.close()
    print(json.dumps({"bytes": got, "expect": expect, "files": complete,
                      "of": len(files), "status": status}))
    sys.exit(0 if status == "complete" else 1)


# ------------------------------------------------------------------ makuo's result
def check_result(path, n):
    """makuo sync --json: the result must list members r1..rN, each ok, and exit 0"""
    n = int(n)
    try:
        with open(path) as f:
            o = json.load(f)
    except (OSError, ValueError) as e:
        print(f"no JSON result ({e.__class__.__name__}: {e})")
        return
    problems = []
    ms = o.get("members") or []
    names = sorted(str(m.get("name")) for m in ms)
    want = sorted(f"r{i}" for i in range(1, n + 1))
    if names != want:
        problems.append(f"{len(ms)} members ({','.join(names) or 'none'}), want r1..r{n}")
    bad = [f"{m.get('name')} {m.get('result')}" + (f" ({m.get('error')})" if m.get("error") else "")
           for m in ms if m.get("result") != "ok"]
    if bad:
        problems.append("not ok: " + ", ".join(bad))
    if o.get("exit") != 0:
        problems.append(f"exit {o.get('exit')}")
    if o.get("error"):
        problems.append(f"error: {o.get('error')}")
    print("; ".join(problems) if problems else "ok")


# ------------------------------------------------------------------ outage
def outage(ms, period, start, maxsecs, ifname):
    """In the deaf receiver's namespace: from START (epoch seconds) on, each PERIOD ms holds
    PERIOD-MS ms of service and then MS ms in which everything arriving on IFNAME is dropped
    (a rule in bench/run's table inet mbout, counted by its counter "dropped"). Ends after
    MAXSECS, or on SIGTERM; either way the chain is flushed (bench/run flushes it again)."""
    import signal
    import subprocess
    ms, period = int(ms) / 1000.0, int(period) / 1000.0
    start = float(start)
    end = start + float(maxsecs)
    add = f'add rule inet mbout in iifname "{ifname}" counter name "dropped" drop'
    flush = 'flush chain inet mbout in'

    def stop(_sig, _frm):
        raise SystemExit(0)
    signal.signal(signal.SIGTERM, stop)

    def until(t):
        d = t - time.time()
        if d > 0:
            time.sleep(d)
    k = 0
    try:
        while True:
            down = start + k * period + (period - ms)
            up = min(start + (k + 1) * period, end)
            if down >= end:
                break
            until(down)
            subprocess.run(['nft', add], check=True)
            a = time.time()
            until(up)
            subprocess.run(['nft', flush], check=True)
            print(f"deaf {a - start:.3f} s .. {time.time() - start:.3f} s", flush=True)
            k += 1
    finally:
        subprocess.run(['nft', flush])


# ------------------------------------------------------------------ misc
def cpu_busy(secs):
    def rd():
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    a, ia = rd()
    time.sleep(float(secs))
    b, ib = rd()
    print(round(100.0 * (1 - (ib - ia) / max(1, b - a))))


def median(*xs):
    v = sorted(float(x) for x in xs)
    n = len(v)
    print(f"{(v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2):.3f}")


if __name__ == '__main__':
    cmd, args = sys.argv[1].replace('-', '_'), sys.argv[2:]
    globals()[cmd](*args)
