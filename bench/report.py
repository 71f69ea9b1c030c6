#!/usr/bin/env python3
"""Turns bench/run's per-rep records into the cell table (JSON), a Markdown report and
an SVG plot of seconds against the number of receivers. Python 3 standard library only.

    report.py REPS.jsonl META.json [--json FILE] [--md FILE] [--svg FILE]
    report.py --svg-from CELLS.json --svg FILE      # re-plot a saved JSON

REPS.jsonl holds one object per timed run:
  {"tool","workload","receivers","loss_pct","link_mbit","durable","rep","seconds",
   "ok","payload_bytes","wire_bytes","cpu_sender","cpu_receivers","note"}
"""
import json
import math
import sys

TOOL_ORDER = ["raw-mcast", "makuo-direct", "makuo-daemon", "uftp", "udpcast", "rsync-par", "rsync-seq"]
WL_ORDER = ["big", "small", "update", "noop"]
REFERENCE = "raw-mcast"


def med(v):
    v = sorted(v)
    n = len(v)
    if n == 0:
        return None
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def rnd(x, k=3):
    return None if x is None else round(x, k)


def tool_key(t):
    return (TOOL_ORDER.index(t) if t in TOOL_ORDER else len(TOOL_ORDER), t)


def cell_key(c):
    return (WL_ORDER.index(c["workload"]) if c["workload"] in WL_ORDER else 9, c["loss_pct"],
            c["receivers"], tool_key(c["tool"]), not c["durable"])


def cells_from_reps(recs):
    groups = {}
    for r in recs:
        k = (r["tool"], r["workload"], r["receivers"], r["loss_pct"], r["link_mbit"], r["durable"])
        groups.setdefault(k, []).append(r)
    cells = []
    for (tool, wl, n, loss, link, durable), rs in groups.items():
        rs.sort(key=lambda r: r["rep"])
        ok = all(r["ok"] for r in rs)
        times = [r["seconds"] for r in rs]
        good = [r["seconds"] for r in rs if r["ok"]]
        payload = rs[0]["payload_bytes"]
        if ok:
            secs = med(times)
        elif tool == REFERENCE:
            # the unreliable reference is timed even when datagrams were lost; ok says so
            secs = med(times)
        else:
            secs = None   # a wrong result is reported, not timed
        wire = med([r["wire_bytes"] for r in rs if r["wire_bytes"] is not None])
        cs = [r["cpu_sender"] for r in rs if r.get("cpu_sender") is not None]
        cr = [r["cpu_receivers"] for r in rs if r.get("cpu_receivers") is not None]
        notes = sorted({r["note"] for r in rs if r.get("note")})
        cells.append({
            "tool": tool, "workload": wl, "receivers": n, "loss_pct": loss, "link_mbit": link,
            "durable": durable,
            "seconds": rnd(secs),
            "reps": [rnd(r["seconds"]) if r["ok"] or tool == REFERENCE else None for r in rs],
            "limit_seconds": rnd(payload * 8 / (link * 1e6)) if link else None,
            "wire_ratio": rnd(wire / payload) if (wire is not None and payload) else None,
            "ok": ok,
            "ok_reps": len(good),
            "raw_ratio": None,
            "cpu_sender_s": rnd(med(cs), 2),
            "cpu_receivers_s": rnd(med(cr), 2),
            "payload_bytes": payload,
            "wire_bytes": wire,
            "kernel_drops": sum(r.get("kernel_drops", 0) for r in rs),
            "note": "; ".join(notes) if notes else None,
        })
    ref = {(c["workload"], c["receivers"], c["loss_pct"], c["link_mbit"]): c
           for c in cells if c["tool"] == REFERENCE}
    for c in cells:
        r = ref.get((c["workload"], c["receivers"], c["loss_pct"], c["link_mbit"]))
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


def markdown(cells, meta, svgname=None):
    out = []
    if meta:
        out.append("### Run\n")
        for k, v in meta.items():
            out.append(f"- {k}: {v}")
        out.append("")
    if svgname:
        out.append(f"![seconds against receivers]({svgname})\n")
    # side by side: durable / no fsync per tool and N
    losses = sorted({c["loss_pct"] for c in cells})
    ns = sorted({c["receivers"] for c in cells})
    wls = sorted({c["workload"] for c in cells}, key=lambda w: WL_ORDER.index(w) if w in WL_ORDER else 9)
    out.append("### Seconds (median), with fsync / without\n")
    out.append("Tools that have a durability step show `with / without` it (makuo: fsync before rename, "
               "rsync: `--fsync`); the others one number. `FAIL` = a receiver was wrong or the command "
               "failed (not timed); `*` = the unreliable reference lost data (timed anyway).\n")
    for wl in wls:
        for loss in losses:
            sub = [c for c in cells if c["workload"] == wl and c["loss_pct"] == loss]
            if not sub:
                continue
            payload = sub[0]["payload_bytes"]
            link = sub[0]["link_mbit"]
            lim = sub[0]["limit_seconds"]
            out.append(f"**{wl}**, loss {loss:g} %, payload {mib(payload)} ({payload} B)"
                       + (f", link limit {lim:.3g} s at {link} Mbit/s" if lim else "") + "\n")
            out.append("| tool | " + " | ".join(f"N={n}" for n in ns) + " |")
            out.append("|---|" + "---:|" * len(ns))
            for tool in sorted({c["tool"] for c in sub}, key=tool_key):
                row = [tool]
                for n in ns:
                    vs = []
                    for durable in (True, False):
                        c = next((c for c in sub if c["tool"] == tool and c["receivers"] == n
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
    out.append("### Every cell\n")
    out.append("seconds: median over the reps, from the command's start (discovery included) until every "
               "receiver has the files in place; link limit: payload bits ÷ link rate; raw ÷ tool: "
               "raw-mcast's seconds ÷ the tool's (1.00 = at the wire limit of the run); wire ratio: bytes "
               "the sender put on its link ÷ payload bytes; CPU: user+system seconds of the sender's and "
               "all receivers' processes (median).\n")
    out.append("| workload | loss % | N | tool | fsync | seconds | reps (s) | link limit (s) | raw ÷ tool "
               "| wire ratio | sender bytes | CPU s sender | CPU s receivers | ok |")
    out.append("|---|---:|---:|---|---|---:|---|---:|---:|---:|---:|---:|---:|---|")
    for c in cells:
        reps = " ".join("FAIL" if x is None else f"{x:.2f}" for x in c["reps"])
        ok = "yes" if c["ok"] else f"NO ({c['ok_reps']}/{len(c['reps'])})"
        secs = "FAIL" if c["seconds"] is None else fmt(c["seconds"]) + ("" if c["ok"] else "*")
        wb = "-" if c["wire_bytes"] is None else f"{c['wire_bytes']:,}"
        out.append(f"| {c['workload']} | {c['loss_pct']:g} | {c['receivers']} | {c['tool']} | "
                   f"{'yes' if c['durable'] else 'no'} | {secs} | {reps} | {fmt(c['limit_seconds'], 3)} | "
                   f"{fmt(c['raw_ratio'])} | {fmt(c['wire_ratio'], 3)} | {wb} | {fmt(c['cpu_sender_s'])} | "
                   f"{fmt(c['cpu_receivers_s'])} | {ok} |")
    out.append("")
    notes = [c for c in cells if c["note"]]
    if notes:
        out.append("### Notes\n")
        for c in notes:
            out.append(f"- {c['tool']} {c['workload']} N={c['receivers']} loss {c['loss_pct']:g} % "
                       f"fsync={'yes' if c['durable'] else 'no'}: {c['note']}")
        out.append("")
    return "\n".join(out)


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
    panels = []
    for wl in sorted({c["workload"] for c in cells}, key=lambda w: WL_ORDER.index(w) if w in WL_ORDER else 9):
        for loss in sorted({c["loss_pct"] for c in cells if c["workload"] == wl}):
            panels.append((wl, loss))
    series = sorted({(c["tool"], c["durable"]) for c in cells}, key=lambda s: (tool_key(s[0]), not s[1]))
    colors = {}
    k = 0
    for t, _ in series:
        if t not in colors:
            colors[t] = COLORS.get(t) or EXTRA[k % len(EXTRA)]
            k += t not in COLORS
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
    for pi, (wl, loss) in enumerate(panels):
        px = (pi % cols) * (pw + ml + mr) + ml
        py = (pi // cols) * (ph + mt + mb) + mt + 20
        sub = [c for c in cells if c["workload"] == wl and c["loss_pct"] == loss]
        ymax = nice_max(max([c["seconds"] or 0 for c in sub] + [c["limit_seconds"] or 0 for c in sub] + [0.01]) * 1.05)

        def X(n):
            return px + (math.log2(n) - x0) / (x1 - x0) * pw

        def Y(s):
            return py + ph - s / ymax * ph
        payload = sub[0]["payload_bytes"] if sub else 0
        o.append(f'<text x="{px}" y="{py - 8}" font-size="12" font-weight="bold">{esc(wl)} '
                 f'({mib(payload) if payload else "nothing to send"}), loss {loss:g} %</text>')
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
        for tool, durable in series:
            pts = sorted(((c["receivers"], c) for c in sub if c["tool"] == tool and c["durable"] == durable),
                         key=lambda p: p[0])
            col = colors[tool]
            variant = not durable and tool not in NO_DURABILITY   # the no-fsync variant
            dash = ' stroke-dasharray="6,3"' if variant else ''
            good = [(n, c) for n, c in pts if c["seconds"] is not None]
            if len(good) > 1:
                d = " ".join(f"{X(n):.1f},{Y(c['seconds']):.1f}" for n, c in good)
                o.append(f'<polyline points="{d}" fill="none" stroke="{col}" stroke-width="2"{dash}/>')
            for n, c in pts:
                if c["seconds"] is None:
                    o.append(f'<text x="{X(n):.1f}" y="{py + 12}" text-anchor="middle" fill="{col}">✗</text>')
                else:
                    fill = col if c["ok"] else "white"
                    tip = (f'<title>{esc(tool)} fsync={"yes" if durable else "no"} N={n}: '
                           f'{c["seconds"]:.2f} s</title>')
                    if variant:
                        o.append(f'<rect x="{X(n) - 3.5:.1f}" y="{Y(c["seconds"]) - 3.5:.1f}" width="7" height="7" '
                                 f'fill="{fill}" stroke="{col}">{tip}</rect>')
                    else:
                        o.append(f'<circle cx="{X(n):.1f}" cy="{Y(c["seconds"]):.1f}" r="3.5" fill="{fill}" '
                                 f'stroke="{col}">{tip}</circle>')
    lx0 = cols * (pw + ml + mr) + 5
    ly = 60
    for tool, durable in series:
        col = colors[tool]
        variant = not durable and tool not in NO_DURABILITY
        dash = ' stroke-dasharray="6,3"' if variant else ''
        lab = tool + ("" if tool in NO_DURABILITY else (" (fsync)" if durable else " (no fsync)"))
        o.append(f'<line x1="{lx0}" y1="{ly}" x2="{lx0 + 28}" y2="{ly}" stroke="{col}" stroke-width="2"{dash}/>')
        if variant:
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
