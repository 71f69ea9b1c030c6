#!/usr/bin/env python3
"""Turns bench/run's per-rep records into the cell table (JSON), a Markdown report and
an SVG plot of seconds against the number of receivers. Python 3 standard library only.

    report.py REPS.jsonl META.json [--json FILE] [--md FILE] [--svg FILE]
    report.py --svg-from CELLS.json --svg FILE      # re-plot a saved JSON

REPS.jsonl holds one object per timed run:
  {"tool","workload","receivers","loss_pct","link_mbit","durable","outage","slow_member_mbit",
   "keyed","atomic","multicast","unicast_member","relay","rep","seconds","ok","payload_bytes",
   "wire_bytes",
   "wire_bytes_all","cpu_sender","cpu_receivers","version","note", ...}

A cell is one (tool, workload, receivers, loss, link, durable, outage, slow member, keyed,
atomic, multicast, unicast member, relay): every field that changes what is measured is part
of its identity, so runs with and without an option are separate rows. Older records without a
field read as the default (no outage, no slow member, keyed/atomic unknown, multicast on, no
unicast member, relay unknown). A unicast member (the first receiver drops makuo's group) is
makuo's condition alone: it is not among the cluster's conditions, so raw-mcast's yardstick
for such a cell is the run with multicast everywhere.
"""
import json
import math
import sys

TOOL_ORDER = ["raw-mcast", "makuo-direct", "makuo-daemon", "uftp", "udpcast", "rsync-par", "rsync-seq"]
WL_ORDER = ["big", "small", "update", "noop"]
REFERENCE = "raw-mcast"
# wire bytes per payload byte of the reference's full datagrams: 1472 B of payload in a
# 1514 B Ethernet frame (what tbf counts); "payload / link x 1.029" is the wire limit
WIRE_FACTOR = 1514 / 1472
GIB = float(1 << 30)
IDENTITY = ("tool", "workload", "receivers", "loss_pct", "link_mbit", "durable", "outage",
            "slow_member_mbit", "keyed", "atomic", "multicast", "unicast_member", "relay")
# the conditions of the cluster (the same for every tool in them): raw-mcast's reference key
CONDITIONS = ("workload", "receivers", "loss_pct", "link_mbit", "outage", "slow_member_mbit", "multicast")
DEFAULTS = {"outage": None, "slow_member_mbit": None, "keyed": None, "atomic": None, "multicast": True,
            "unicast_member": None, "relay": None}


def med(v):
    v = sorted(v)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def rnd(x, k=3):
    return None if x is None else round(x, k)


def field(c, k):
    return c.get(k, DEFAULTS.get(k))


# the tool's own variants: one row (and one plotted series) each
VARIANT = ("keyed", "atomic", "relay", "unicast_member")


def var_of(c):
    return tuple(field(c, f) for f in VARIANT)


def var_dict(v):
    return dict(zip(VARIANT, v))


def tool_key(t):
    return (TOOL_ORDER.index(t) if t in TOOL_ORDER else len(TOOL_ORDER), t)


def nkey(x):
    """sort None first, then by value (mixed None/number/str fields)"""
    return (x is not None, x if isinstance(x, (int, float)) else str(x))


def wl_key(w):
    return WL_ORDER.index(w) if w in WL_ORDER else 9


def cond_key(c):
    return (wl_key(c["workload"]), c["loss_pct"], nkey(field(c, "outage")), nkey(field(c, "slow_member_mbit")),
            not field(c, "multicast"))


def variant_key(c):
    k = field(c, "keyed")
    return (tool_key(c["tool"]), k is not True, k is None, bool(field(c, "atomic")),
            bool(field(c, "relay")), nkey(field(c, "unicast_member")))


def cell_key(c):
    return cond_key(c) + (c["receivers"],) + variant_key(c) + (not c["durable"],)


def bottleneck_mbit(link, slow):
    """the slowest link a receiver has (every receiver must get every byte); None unshaped"""
    rates = [r for r in (link, slow) if r]
    return min(rates) if rates else None


def cells_from_reps(recs):
    groups = {}
    for r in recs:
        k = tuple(field(r, f) for f in IDENTITY)
        groups.setdefault(k, []).append(r)
    cells = []
    for k, rs in groups.items():
        ident = dict(zip(IDENTITY, k))
        tool = ident["tool"]
        rs.sort(key=lambda r: r["rep"])
        ok = all(r["ok"] for r in rs)
        times = [r["seconds"] for r in rs]
        good = [r["seconds"] for r in rs if r["ok"]]
        payload = rs[0]["payload_bytes"]
        n = ident["receivers"]
        if ok:
            secs = med(times)
        elif tool == REFERENCE:
            # the unreliable reference is timed even when datagrams were lost; ok says so
            secs = med(times)
        else:
            secs = None   # a wrong result is reported, not timed
        wire = med([r["wire_bytes"] for r in rs if r.get("wire_bytes") is not None])
        wire_all = med([r["wire_bytes_all"] for r in rs if r.get("wire_bytes_all") is not None])
        cs = med([r["cpu_sender"] for r in rs if r.get("cpu_sender") is not None])
        cr = med([r["cpu_receivers"] for r in rs if r.get("cpu_receivers") is not None])
        od = [r["outage_drops"] for r in rs if r.get("outage_drops") is not None]
        raw_snd = [r["raw_sender"]["payload_mbit_s"] for r in rs if isinstance(r.get("raw_sender"), dict)
                   and r["raw_sender"].get("payload_mbit_s")]
        notes = sorted({r["note"] for r in rs if r.get("note")})
        versions = sorted({r["version"] for r in rs if r.get("version")})
        bn = bottleneck_mbit(ident["link_mbit"], ident["slow_member_mbit"])
        limit = payload * 8 / (bn * 1e6) if bn else None
        gib = payload / GIB
        cell = dict(ident)
        cell.update({
            "seconds": rnd(secs),
            "reps": [rnd(r["seconds"]) if r["ok"] or tool == REFERENCE else None for r in rs],
            "limit_seconds": rnd(limit),
            "link_ratio": rnd(secs / (limit * WIRE_FACTOR)) if (secs is not None and limit) else None,
            "wire_ratio": rnd(wire / payload) if (wire is not None and payload) else None,
            "wire_ratio_all": rnd(wire_all / payload) if (wire_all is not None and payload) else None,
            "ok": ok,
            "ok_reps": len(good),
            "raw_ratio": None,
            "cpu_sender_s": rnd(cs, 2),
            "cpu_receivers_s": rnd(cr, 2),
            "cpu_sender_s_per_gib": rnd(cs / gib, 2) if (cs is not None and payload) else None,
            "cpu_receivers_s_per_gib_each": rnd(cr / n / gib, 2) if (cr is not None and payload) else None,
            "payload_bytes": payload,
            "wire_bytes": wire,
            "wire_bytes_all": wire_all,
            "kernel_drops": sum(r.get("kernel_drops", 0) for r in rs),
            "outage_drops": med(od) if od else None,
            "raw_sender_mbit_s": rnd(med(raw_snd), 1) if raw_snd else None,
            "version": "; ".join(versions) if versions else None,
            "note": "; ".join(notes) if notes else None,
        })
        cells.append(cell)
    ref = {tuple(field(c, f) for f in CONDITIONS): c for c in cells if c["tool"] == REFERENCE}
    for c in cells:
        r = ref.get(tuple(field(c, f) for f in CONDITIONS))
        # with nothing to send (noop) the reference takes no time: no ratio
        if r and r["seconds"] and c["seconds"] and c["payload_bytes"]:
            c["raw_ratio"] = rnd(r["seconds"] / c["seconds"])
    cells.sort(key=cell_key)
    return cells


def fmt(x, k=2, none="-"):
    if x is None:
        return none
    return f"{x:.{k}f}"


def mib(b):
    if b >= 1048576:
        return f"{b / 1048576:.1f} MiB"
    return f"{b / 1024:.1f} KiB"


def conditions(c, loss=True):
    """the cluster's conditions of a cell, in words"""
    out = [f"loss {c['loss_pct']:g} %"] if loss else []
    if field(c, "outage"):
        out.append(f"outage {field(c, 'outage')} ms")
    if field(c, "slow_member_mbit"):
        out.append(f"slow member {field(c, 'slow_member_mbit')} Mbit/s")
    if not field(c, "multicast"):
        out.append("no multicast")
    return ", ".join(out)


def variant(c):
    """the tool's own variant (durability aside): keyed or not, atomic, relay, a member served
    by unicast"""
    out = []
    k = field(c, "keyed")
    if k is not None:
        out.append("keyed" if k else "unkeyed")
    if field(c, "atomic"):
        out.append("atomic")
    if field(c, "relay"):
        out.append("relay")
    if field(c, "unicast_member"):
        out.append(f"{field(c, 'unicast_member')} member by unicast")
    return " ".join(out)


def markdown(cells, meta, svgname=None):
    out = []
    if meta:
        out.append("### Run\n")
        for k, v in meta.items():
            out.append(f"- {k}: {v}")
        out.append("")
    if svgname:
        out.append(f"![seconds against receivers]({svgname})\n")
    ns = sorted({c["receivers"] for c in cells})
    conds = sorted({tuple(field(c, f) for f in CONDITIONS if f != "receivers") for c in cells},
                   key=lambda t: cond_key(dict(zip([f for f in CONDITIONS if f != "receivers"], t))))
    out.append("### Seconds (median), with fsync / without\n")
    out.append("Tools that have a durability step show `with / without` it (makuo: fsync before rename, "
               "rsync: `--fsync`); the others one number. makuo rows say whether the cluster was keyed. "
               "`FAIL` = a receiver was wrong or the command failed (not timed); `*` = the unreliable "
               "reference lost data (timed anyway).\n")
    cf = [f for f in CONDITIONS if f != "receivers"]
    for cond in conds:
        cd = dict(zip(cf, cond))
        sub = [c for c in cells if all(field(c, f) == cd[f] for f in cf)]
        if not sub:
            continue
        payload = sub[0]["payload_bytes"]
        lim = sub[0]["limit_seconds"]
        bn = bottleneck_mbit(cd["link_mbit"], cd["slow_member_mbit"])
        out.append(f"**{cd['workload']}**, {conditions(sub[0])}, payload {mib(payload)} ({payload} B)"
                   + (f", link limit {lim:.3g} s at {bn} Mbit/s (× {WIRE_FACTOR:.3f} on the wire: "
                      f"{lim * WIRE_FACTOR:.3g} s)" if lim else "") + "\n")
        out.append("| tool | " + " | ".join(f"N={n}" for n in ns) + " |")
        out.append("|---|" + "---:|" * len(ns))
        rows = sorted({(c["tool"],) + var_of(c) for c in sub},
                      key=lambda t: variant_key({"tool": t[0], **var_dict(t[1:])}))
        for tool, *var in rows:
            var = tuple(var)
            lab = tool + (f" ({variant(var_dict(var))})" if variant(var_dict(var)) else "")
            row = [lab]
            for n in ns:
                vs = []
                for durable in (True, False):
                    c = next((c for c in sub if c["tool"] == tool and c["receivers"] == n
                              and var_of(c) == var
                              and c["durable"] == durable), None)
                    if c is None:
                        continue
                    if c["seconds"] is None:
                        vs.append("FAIL")
                    else:
                        vs.append(fmt(c["seconds"]) + ("" if c["ok"] else "*"))
                row.append(" / ".join(vs) if vs else "")
            out.append("| " + " | ".join(row) + " |")
        out.append("")
    out.extend(key_cost(cells))
    out.extend(atomic_cost(cells))
    out.extend(cpu_per_gib(cells))
    out.append("### Every cell\n")
    out.append("seconds: median over the reps, from the command's start (discovery included) until every "
               "receiver has the files in place; link limit: payload bits ÷ the slowest receiver's link "
               f"rate; × wire limit: seconds ÷ (link limit × {WIRE_FACTOR:.3f}, the frames of full 1472-byte "
               "datagrams): 1.00 is the wire limit, raw-mcast should sit at about 1.00; raw ÷ tool: "
               "raw-mcast's seconds ÷ the tool's in the same conditions; wire ratio: bytes the sender "
               "put on its link ÷ payload bytes, and (all) every host's bytes, feedback included; CPU: "
               "user+system seconds of the sender's and all receivers' processes (median), and per GiB "
               "of payload (receivers: each).\n")
    out.append("| workload | conditions | N | tool | variant | fsync | seconds | reps (s) | link limit (s) "
               "| × wire limit | raw ÷ tool | wire ratio | wire ratio (all) | CPU s sender | CPU s receivers "
               "| CPU s/GiB sender | CPU s/GiB each receiver | ok |")
    out.append("|---|---|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in cells:
        reps = " ".join("FAIL" if x is None else f"{x:.2f}" for x in c["reps"])
        ok = "yes" if c["ok"] else f"NO ({c['ok_reps']}/{len(c['reps'])})"
        secs = "FAIL" if c["seconds"] is None else fmt(c["seconds"]) + ("" if c["ok"] else "*")
        out.append(f"| {c['workload']} | {conditions(c)} | {c['receivers']} | {c['tool']} | {variant(c) or '-'} | "
                   f"{'yes' if c['durable'] else 'no'} | {secs} | {reps} | {fmt(c['limit_seconds'], 3)} | "
                   f"{fmt(c.get('link_ratio'), 3)} | {fmt(c['raw_ratio'])} | {fmt(c['wire_ratio'], 3)} | "
                   f"{fmt(c.get('wire_ratio_all'), 3)} | {fmt(c['cpu_sender_s'])} | {fmt(c['cpu_receivers_s'])} | "
                   f"{fmt(c.get('cpu_sender_s_per_gib'))} | {fmt(c.get('cpu_receivers_s_per_gib_each'))} | {ok} |")
    out.append("")
    extra = [c for c in cells if c.get("raw_sender_mbit_s") or c.get("outage_drops") is not None]
    if extra:
        out.append("### Yardstick and outage counters\n")
        for c in extra:
            bits = []
            if c.get("raw_sender_mbit_s"):
                bits.append(f"raw-mcast's sender handed the payload to its socket at "
                            f"{c['raw_sender_mbit_s']:g} Mbit/s (its send loop's own clock, median; "
                            "above the link rate means the sender is not what limits it)")
            if c.get("outage_drops") is not None:
                bits.append(f"the outage dropped {c['outage_drops']:g} packets per run (median)")
            out.append(f"- {c['tool']} {c['workload']} N={c['receivers']} {conditions(c)}"
                       f"{' ' + variant(c) if variant(c) else ''}: " + "; ".join(bits))
        out.append("")
    notes = [c for c in cells if c["note"]]
    if notes:
        out.append("### Notes\n")
        for c in notes:
            out.append(f"- {c['tool']} {c['workload']} N={c['receivers']} {conditions(c)}"
                       f"{' ' + variant(c) if variant(c) else ''} fsync={'yes' if c['durable'] else 'no'}: "
                       f"{c['note']}")
        out.append("")
    return "\n".join(out)


def link(c):
    return f"{c['link_mbit']} Mbit/s" if c["link_mbit"] else "unshaped"


def same_but(c, d, *fields):
    """c and d are the same cell but for these identity fields"""
    return all(field(c, f) == field(d, f) for f in IDENTITY if f not in fields)


def key_cost(cells):
    """what the key costs: each keyed makuo cell against the unkeyed one of the same run"""
    pairs = []
    for k in cells:
        if not k["tool"].startswith("makuo") or field(k, "keyed") is not True:
            continue
        u = next((c for c in cells if field(c, "keyed") is False and same_but(c, k, "keyed")), None)
        if u is not None:
            pairs.append((k, u))
    if not pairs:
        return []
    out = ["### What the key costs (keyed ÷ unkeyed, same run)\n",
           "Time: median seconds keyed and unkeyed and their ratio (`FAIL`: a rep failed). CPU: "
           "user+system seconds per GiB of payload (medians), keyed / unkeyed, and what the key adds "
           "(keyed − unkeyed), for the sender and for each receiver.\n",
           "| workload | link | conditions | N | tool | fsync | keyed s | unkeyed s | keyed ÷ unkeyed "
           "| sender CPU s/GiB | sender: key adds | each receiver CPU s/GiB | receiver: key adds |",
           "|---|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"]

    def both(a, b, k=2):
        return f"{fmt(a, k)} / {fmt(b, k)}"

    def delta(a, b):
        return fmt(a - b) if a is not None and b is not None else "-"
    for k, u in pairs:
        ratio = k["seconds"] / u["seconds"] if k["seconds"] and u["seconds"] else None
        ks = fmt(k["seconds"]) if k["seconds"] is not None else "FAIL"
        us = fmt(u["seconds"]) if u["seconds"] is not None else "FAIL"
        cs = (k.get("cpu_sender_s_per_gib"), u.get("cpu_sender_s_per_gib"))
        cr = (k.get("cpu_receivers_s_per_gib_each"), u.get("cpu_receivers_s_per_gib_each"))
        out.append(f"| {k['workload']} | {link(k)} | {conditions(k)} | {k['receivers']} | {k['tool']} | "
                   f"{'yes' if k['durable'] else 'no'} | {ks} | {us} | {fmt(ratio, 3)} | {both(*cs)} | "
                   f"{delta(*cs)} | {both(*cr)} | {delta(*cr)} |")
    out.append("")
    return out


def atomic_cost(cells):
    """what --atomic costs: each atomic makuo cell against the plain one of the same run (issue 17's
    target: atomic ÷ plain ≤ 1.05 on small at 8 receivers)"""
    pairs = []
    for a in cells:
        if not a["tool"].startswith("makuo") or field(a, "atomic") is not True:
            continue
        p = next((c for c in cells if field(c, "atomic") is False and same_but(c, a, "atomic")), None)
        if p is not None:
            pairs.append((a, p))
    if not pairs:
        return []
    out = ["### What --atomic costs (atomic ÷ plain, same run)\n",
           "Median seconds with `--atomic` and without, reps alternating, and their ratio "
           "(`FAIL`: a rep failed).\n",
           "| workload | link | conditions | N | tool | fsync | keyed | atomic s | plain s | atomic ÷ plain |",
           "|---|---|---|---:|---|---|---|---:|---:|---:|"]
    for a, p in pairs:
        ratio = a["seconds"] / p["seconds"] if a["seconds"] and p["seconds"] else None
        s_a = fmt(a["seconds"]) if a["seconds"] is not None else "FAIL"
        s_p = fmt(p["seconds"]) if p["seconds"] is not None else "FAIL"
        k = field(a, "keyed")
        out.append(f"| {a['workload']} | {link(a)} | {conditions(a)} | {a['receivers']} | {a['tool']} | "
                   f"{'yes' if a['durable'] else 'no'} | {'-' if k is None else ('yes' if k else 'no')} | "
                   f"{s_a} | {s_p} | {fmt(ratio, 3)} |")
    out.append("")
    return out


def cpu_per_gib(cells):
    """CPU seconds per GiB of payload for every tool that moved a payload, side by side"""
    moved = [c for c in cells if c["payload_bytes"] and c.get("cpu_sender_s_per_gib") is not None
             and c["tool"] != REFERENCE]
    if not moved:
        return []
    out = ["### CPU seconds per GiB of payload\n",
           "User+system seconds of the sender's processes and of each receiver's (all receivers' ÷ N), "
           "per GiB of payload, medians; makuo keyed and unkeyed, rsync and the others as run.\n",
           "| workload | link | conditions | N | fsync | tool | variant | sender | each receiver |",
           "|---|---|---|---:|---|---|---|---:|---:|"]
    for c in moved:
        out.append(f"| {c['workload']} | {link(c)} | {conditions(c)} | {c['receivers']} | "
                   f"{'yes' if c['durable'] else 'no'} | "
                   f"{c['tool']} | {variant(c) or '-'} | {fmt(c.get('cpu_sender_s_per_gib'))} | "
                   f"{fmt(c.get('cpu_receivers_s_per_gib_each'))} |")
    out.append("")
    return out


# ------------------------------------------------------------------ SVG
COLORS = {"raw-mcast": "#000000", "makuo-direct": "#d62728", "makuo-daemon": "#ff7f0e",
          "uftp": "#2ca02c", "udpcast": "#9467bd", "rsync-par": "#1f77b4", "rsync-seq": "#17becf"}
EXTRA = ["#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def nice_max(v):
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if m * e >= v:
            return m * e
    return 10 * e


NO_DURABILITY = ("raw-mcast", "uftp", "udpcast")


def svg(cells, title=""):
    cf = [f for f in CONDITIONS if f != "receivers"]
    panels = sorted({tuple(field(c, f) for f in cf) for c in cells}, key=lambda t: cond_key(dict(zip(cf, t))))
    series = sorted({(c["tool"], c["durable"]) + var_of(c) for c in cells},
                    key=lambda s: variant_key({"tool": s[0], **var_dict(s[2:])}) + (not s[1],))
    # a tool's first variant (keyed before unkeyed) gets its own colour, further ones the extras
    colors = {}
    k = 0
    for t, _d, *var in series:
        v = (t,) + tuple(var)
        if v not in colors:
            own = COLORS.get(t)
            if own and own not in colors.values():
                colors[v] = own
            else:
                colors[v] = EXTRA[k % len(EXTRA)]
                k += 1
    ns = sorted({c["receivers"] for c in cells})
    pw, ph = 330, 250          # panel plot area
    ml, mr, mt, mb = 55, 15, 40, 45
    cols = min(len(panels), 2) or 1
    rows = max(1, math.ceil(len(panels) / cols))
    legend_w = 190
    W = cols * (pw + ml + mr) + legend_w
    H = rows * (ph + mt + mb) + 30
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="10" y="18" font-size="14" font-weight="bold">{esc(title or "seconds against receivers (N)")}</text>']
    lx = [math.log2(n) for n in ns]
    x0, x1 = (min(lx), max(lx)) if lx else (0, 1)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    for pi, pan in enumerate(panels):
        px = (pi % cols) * (pw + ml + mr) + ml
        py = (pi // cols) * (ph + mt + mb) + mt + 20
        sub = [c for c in cells if tuple(field(c, f) for f in cf) == pan]
        wl = pan[0]
        ymax = nice_max(max([c["seconds"] or 0 for c in sub] + [c["limit_seconds"] or 0 for c in sub] + [0.01]) * 1.05)

        def X(n):
            return px + (math.log2(n) - x0) / (x1 - x0) * pw

        def Y(s):
            return py + ph - s / ymax * ph
        payload = sub[0]["payload_bytes"] if sub else 0
        o.append(f'<text x="{px}" y="{py - 8}" font-size="12" font-weight="bold">{esc(wl)} '
                 f'({mib(payload) if payload else "nothing to send"}), {esc(conditions(sub[0]))}</text>')
        o.append(f'<rect x="{px}" y="{py}" width="{pw}" height="{ph}" fill="none" stroke="#888"/>')
        for i in range(6):
            v = ymax * i / 5
            y = Y(v)
            o.append(f'<line x1="{px}" y1="{y:.1f}" x2="{px + pw}" y2="{y:.1f}" stroke="#eee"/>')
            o.append(f'<text x="{px - 5}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
        for n in ns:
            o.append(f'<text x="{X(n):.1f}" y="{py + ph + 15}" text-anchor="middle">{n}</text>')
        o.append(f'<text x="{px + pw / 2}" y="{py + ph + 32}" text-anchor="middle">receivers N</text>')
        o.append(f'<text x="{px - 40}" y="{py + ph / 2}" text-anchor="middle" '
                 f'transform="rotate(-90 {px - 40} {py + ph / 2})">seconds</text>')
        lim = next((c["limit_seconds"] for c in sub if c["limit_seconds"] is not None), None)
        if lim is not None and lim > 0:
            o.append(f'<line x1="{px}" y1="{Y(lim):.1f}" x2="{px + pw}" y2="{Y(lim):.1f}" stroke="#999" '
                     f'stroke-dasharray="2,3"/>')
            o.append(f'<text x="{px + pw - 3}" y="{Y(lim) - 3:.1f}" text-anchor="end" fill="#777">link limit</text>')
        for tool, durable, *var in series:
            var = tuple(var)
            pts = sorted(((c["receivers"], c) for c in sub if c["tool"] == tool and c["durable"] == durable
                          and var_of(c) == var),
                         key=lambda p: p[0])
            col = colors[(tool,) + var]
            nofsync = not durable and tool not in NO_DURABILITY   # the no-fsync variant
            dash = ' stroke-dasharray="6,3"' if nofsync else ''
            good = [(n, c) for n, c in pts if c["seconds"] is not None]
            if len(good) > 1:
                d = " ".join(f"{X(n):.1f},{Y(c['seconds']):.1f}" for n, c in good)
                o.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="2"{dash}/>')
            for n, c in pts:
                if c["seconds"] is None:
                    o.append(f'<text x="{X(n):.1f}" y="{py + 12}" text-anchor="middle" fill="{col}">✗</text>')
                else:
                    fill = col if c["ok"] else "white"
                    tip = (f'<title>{esc(tool)} {esc(variant(c))} fsync={"yes" if durable else "no"} N={n}: '
                           f'{c["seconds"]:.2f} s</title>')
                    if nofsync:
                        o.append(f'<rect x="{X(n) - 3.5:.1f}" y="{Y(c["seconds"]) - 3.5:.1f}" width="7" height="7" '
                                 f'fill="{fill}" stroke="{col}">{tip}</rect>')
                    else:
                        o.append(f'<circle cx="{X(n):.1f}" cy="{Y(c["seconds"]):.1f}" r="3.5" fill="{fill}" '
                                 f'stroke="{col}">{tip}</circle>')
    lx0 = cols * (pw + ml + mr) + 5
    ly = 60
    for tool, durable, *var in series:
        var = tuple(var)
        col = colors[(tool,) + var]
        nofsync = not durable and tool not in NO_DURABILITY
        dash = ' stroke-dasharray="6,3"' if nofsync else ''
        var = variant(var_dict(var))
        lab = tool + (" " + var if var else "") + ("" if tool in NO_DURABILITY else (" (fsync)" if durable else " (no fsync)"))
        o.append(f'<line x1="{lx0}" y1="{ly}" x2="{lx0 + 28}" y2="{ly}" stroke="{col}" stroke-width="2"{dash}/>')
        if nofsync:
            o.append(f'<rect x="{lx0 + 10.5}" y="{ly - 3.5}" width="7" height="7" fill="{col}"/>')
        else:
            o.append(f'<circle cx="{lx0 + 14}" cy="{ly}" r="3.5" fill="{col}"/>')
        o.append(f'<text x="{lx0 + 34}" y="{ly + 4}">{esc(lab)}</text>')
        ly += 18
    o.append(f'<text x="{lx0}" y="{ly + 10}" fill="#555">hollow: data lost (unreliable)</text>')
    o.append(f'<text x="{lx0}" y="{ly + 26}" fill="#555">✗: wrong result, not timed</text>')
    o.append('</svg>')
    return "\n".join(o) + "\n"


def main(argv):
    args = {"--json": None, "--md": None, "--svg": None, "--svg-from": None, "--title": ""}
    pos = []
    i = 0
    while i < len(argv):
        if argv[i] in args:
            args[argv[i]] = argv[i + 1]
            i += 2
        else:
            pos.append(argv[i])
            i += 1
    if args["--svg-from"]:
        cells = json.load(open(args["--svg-from"]))
        open(args["--svg"], "w").write(svg(cells, args["--title"]))
        return
    recs = [json.loads(line) for line in open(pos[0]) if line.strip()]
    meta = json.load(open(pos[1])) if len(pos) > 1 else {}
    cells = cells_from_reps(recs)
    if args["--json"]:
        with open(args["--json"], "w") as f:
            json.dump(cells, f, indent=1)
            f.write("\n")
    if args["--svg"]:
        open(args["--svg"], "w").write(svg(cells, args["--title"]))
    md = markdown(cells, meta, args["--svg"].rsplit("/", 1)[-1] if args["--svg"] and args["--md"] else None)
    if args["--md"]:
        open(args["--md"], "w").write(md + "\n")
    print(md)


if __name__ == "__main__":
    main(sys.argv[1:])
