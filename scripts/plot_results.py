#!/usr/bin/env python3
"""Plots bench/results/*.json (written by `pdvm bench --json`) into docs/perf.png:
tok/s and % of the measured read ceiling, per run (model, format, backend) and context depth.

Needs matplotlib: `pip install matplotlib` (or `apt-get install python3-matplotlib`).
Usage: python3 scripts/plot_results.py [--results bench/results] [--out docs/perf.png]
       python3 scripts/plot_results.py --markdown   # every run as a table row, from the JSON
       python3 scripts/plot_results.py --gpu-table  # docs/PERFORMANCE.md's GPU table (one row per
                                                    # format and mode, depths as columns)
       python3 scripts/plot_results.py --gpu-plot docs/perf-gpu.png   # its plot
The JSON schema is described in bench/results/README.md; files that do not follow it are
reported and skipped, never half-plotted.
"""
import argparse
import glob
import json
import os
import sys

REQUIRED = ["schema", "schema_version", "device", "ceiling", "model", "results"]


def load(results_dir):
    runs = []
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        with open(path) as f:
            try:
                j = json.load(f)
            except json.JSONDecodeError as e:
                print(f"skip {path}: not JSON ({e})", file=sys.stderr)
                continue
        missing = [k for k in REQUIRED if k not in j]
        if missing or j.get("schema") != "pdvm-bench" or j.get("schema_version") != 1:
            print(f"skip {path}: not a pdvm-bench v1 report (missing {missing})", file=sys.stderr)
            continue
        if not j["model"] or not j["results"]:
            continue  # a --ceiling report: nothing to plot
        m, d = j["model"], j["device"]
        shape = m["shape"] if m["shape"] != "file" else os.path.splitext(os.path.basename(m["source"]))[0]
        shape = shape if len(shape) <= 18 else shape[:17] + "…"
        sp = f"@{m['sparsity']:g}" if m.get("sparsity") else ""
        label = f"{shape} ({m['n_layers']}L) {m['layer_format']}{sp}\n{d['backend']}" + (
            f" {d['gpu_mode']}" if d.get("gpu_mode") else "")
        runs.append((label, j, path))
    return runs


def markdown(runs, results_dir):
    """One row per (run, depth), each linked to its JSON, for docs/PERFORMANCE.md."""
    print("| run (JSON) | model | weights | depth | ms/token median [min..max] | ms/layer | tok/s "
          "| MB/token weights + KV | GB/s | read ceiling GB/s | % of ceiling | floor ms |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for _, j, path in runs:
        m = j["model"]
        rel = os.path.relpath(path, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs"))
        name = m["shape"] if m["shape"] != "file" else os.path.basename(m["source"])
        for r in j["results"]:
            t, b = r["ms_per_token"], r["bytes_per_token"]
            sp = f" at {m['sparsity']:g}" if m.get("sparsity") else ""
            print(f"| [{os.path.basename(path)}]({rel}) | {name}, {m['n_layers']} layers | {m['layer_format']}{sp} "
                  f"(head {m['head_format']}) | {r['depth']} | {t['median']:.2f} [{t['min']:.2f}..{t['max']:.2f}] "
                  f"| {r['ms_per_layer']:.3f} | {r['tok_s']:.1f} | {b['weights'] / 1e6:.1f} + {b['kv'] / 1e6:.1f} "
                  f"| {r['gbps']:.1f} | {j['ceiling']['read_gbps']:.1f} | {r['pct_of_ceiling']:.0f}% | {r['floor_ms']:.2f} |")


GPU_FORMAT_ORDER = ["bf16", "q8_0", "i8_row", "q6_K", "q4_K", "q4_1", "q4_0", "mdcsr", "bitmap_i8"]
GPU_FORMAT_NAME = {"q8_0": "q8_0 (int8, block scales)", "i8_row": "i8_row (int8, row scales)",
                   "mdcsr": "MdCSR", "bitmap_i8": "bitmap_i8"}


GPU_MODES = ["token", "layer", "ops"]


def phi4_cuda_runs(runs):
    """The issue-6 benchmark runs (CUDA, Phi-4 shape, 40 layers) as (format order, layer format,
    sparsity or 0, mode, report)."""
    out = []
    for _, j, _ in runs:
        m, d = j["model"], j["device"]
        if not d["backend"].startswith("cuda") or m["shape"] != "phi-4" or m["n_layers"] != 40:
            continue
        fmt = m["layer_format"]
        order = GPU_FORMAT_ORDER.index(fmt) if fmt in GPU_FORMAT_ORDER else 99
        out.append((order, fmt, m.get("sparsity") or 0.0, d["gpu_mode"], j))
    return out


def gpu_table(runs):
    """docs/PERFORMANCE.md's GPU table: the Phi-4-shaped CUDA runs, one row per (format, mode),
    ms/token and % of the ceiling per depth, tok/s at 1024."""
    rows = {(order, fmt, sp, GPU_MODES.index(mode)): j for order, fmt, sp, mode, j in phi4_cuda_runs(runs)}
    depths = sorted({r["depth"] for j in rows.values() for r in j["results"]})
    print("| format | weights GB | mode | launches | " + " | ".join(f"ms/token d={d}" for d in depths) +
          " | tok/s d=1024 | " + " | ".join(f"% ceiling d={d}" for d in depths) + " |")
    print("| --- " * (4 + 2 * len(depths) + 1) + "|")
    last = None
    for key in sorted(rows):
        j = rows[key]
        m, by = j["model"], {r["depth"]: r for r in j["results"]}
        name = GPU_FORMAT_NAME.get(key[1], key[1]) + (f" {key[2] * 100:.0f}%" if key[2] else "")
        first = (key[1], key[2]) != last
        last = (key[1], key[2])
        r0 = j["results"][0]
        cells = [name if first else "", f"{r0['bytes_per_token']['weights'] / 1e9:.2f}" if first else "",
                 j["device"]["gpu_mode"], str(r0.get("launches_per_token") or "")]
        cells += [f"{by[d]['ms_per_token']['median']:.2f}" if d in by else "-" for d in depths]
        cells += [f"{by[1024]['tok_s']:.0f}" if 1024 in by else "-"]
        cells += [f"{by[d]['pct_of_ceiling']:.1f}" if d in by else "-" for d in depths]
        print("| " + " | ".join(cells) + " |")


def gpu_plot(runs, out):
    """docs/perf-gpu.png: the Phi-4-shaped CUDA runs. Left: % of the read ceiling at depth 1024 per
    format, one bar per mode, tok/s on the bars, issue 6's targets as lines. Right: token mode's
    ms/token against context depth per format."""
    import matplotlib.pyplot as plt
    rows = {}
    for order, fmt, sp, mode, j in phi4_cuda_runs(runs):
        rows.setdefault((order, fmt + (f" {sp * 100:.0f}%" if sp else "")), {})[mode] = j
    if not rows:
        sys.exit("no Phi-4-shaped CUDA runs to plot")
    keys = sorted(rows)
    modes = GPU_MODES
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(16, 5.5), gridspec_kw={"width_ratios": [2.2, 1]})
    width = 0.27
    for mi, mode in enumerate(modes):
        xs, pct, tps = [], [], []
        for i, k in enumerate(keys):
            j = rows[k].get(mode)
            r = next((r for r in j["results"] if r["depth"] == 1024), None) if j else None
            if r is None:
                continue
            xs.append(i + (mi - 1) * width)
            pct.append(r["pct_of_ceiling"])
            tps.append(r["tok_s"])
        ax.bar(xs, pct, width, label=f"{mode} mode")
        for x, p, t in zip(xs, pct, tps):
            ax.annotate(f"{t:.0f}", (x, p), ha="center", va="bottom", fontsize=6.5)
    ax.axhline(85, color="black", lw=0.8, ls="--")
    ax.axhline(75, color="gray", lw=0.8, ls=":")
    ax.text(len(keys) - 0.5, 86, "target int8 / 4-bit: 85%", ha="right", fontsize=7)
    ax.text(len(keys) - 0.5, 72, "target sparse: 75%", ha="right", va="top", fontsize=7)
    ax.set_xticks(range(len(keys)))
    ax.set_xticklabels([k[1] for k in keys], fontsize=8, rotation=20)
    ax.set_ylabel("% of measured read ceiling, depth 1024 (tok/s on the bars)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8, loc="center right")
    ax.grid(axis="y", alpha=0.3)
    for i, k in enumerate(keys):
        j = rows[k].get("token")
        if j is None:
            continue
        pts = sorted((r["depth"], r["ms_per_token"]["median"]) for r in j["results"])
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=3, label=k[1],
                 color=plt.cm.tab20(i / max(1, len(keys) - 1)))
    ax2.set_xlabel("context depth (tokens)")
    ax2.set_ylabel("ms / token, token mode")
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(0.0, 0.93))
    j0 = rows[keys[0]][next(iter(rows[keys[0]]))]
    commits = sorted({j["commit"] for v in rows.values() for j in v.values()})
    gbps = [j["ceiling"]["read_gbps"] for v in rows.values() for j in v.values()]
    fig.suptitle(f"pdvm decode, Phi-4 shape (40 layers, synthetic weights, batch 1) on {j0['device']['name']}: "
                 f"read ceiling {min(gbps):.0f}-{max(gbps):.0f} GB/s; commit {', '.join(commits)}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"wrote {out} from {sum(len(v) for v in rows.values())} runs")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--results", default=os.path.join(root, "bench", "results"))
    ap.add_argument("--out", default=os.path.join(root, "docs", "perf.png"))
    ap.add_argument("--markdown", action="store_true", help="print every run as a table row instead of plotting")
    ap.add_argument("--gpu-table", action="store_true", help="print PERFORMANCE.md's GPU table instead of plotting")
    ap.add_argument("--gpu-plot", metavar="PNG", help="plot the Phi-4-shaped CUDA runs into PNG instead")
    args = ap.parse_args()
    if args.markdown:
        markdown(load(args.results), args.results)
        return
    if args.gpu_table:
        gpu_table(load(args.results))
        return
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        sys.exit("matplotlib is missing: pip install matplotlib")

    runs = load(args.results)
    if args.gpu_plot:
        gpu_plot(runs, args.gpu_plot)
        return
    if not runs:
        sys.exit(f"no pdvm-bench results with decode numbers in {args.results}")
    depths = sorted({r["depth"] for _, j, _ in runs for r in j["results"]})
    width = 0.8 / len(depths)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(runs) + 2), 8), sharex=True)
    for di, depth in enumerate(depths):
        xs, tok_s, pct = [], [], []
        for i, (_, j, _) in enumerate(runs):
            for r in j["results"]:
                if r["depth"] == depth:
                    xs.append(i + (di - (len(depths) - 1) / 2) * width)
                    tok_s.append(r["tok_s"])
                    pct.append(r["pct_of_ceiling"])
        axes[0].bar(xs, tok_s, width, label=f"depth {depth}")
        axes[1].bar(xs, pct, width, label=f"depth {depth}")
        for x, t, p in zip(xs, tok_s, pct):
            axes[0].annotate(f"{t:.1f}", (x, t), ha="center", va="bottom", fontsize=7)
            axes[1].annotate(f"{p:.0f}%", (x, p), ha="center", va="bottom", fontsize=7)
    axes[0].set_ylabel("tokens / s")
    axes[0].set_yscale("log")
    axes[1].set_ylabel("% of measured read ceiling")
    axes[1].set_ylim(0, 110)
    axes[1].axhline(100, color="gray", lw=0.8, ls="--")
    axes[1].set_xticks(range(len(runs)))
    axes[1].set_xticklabels([label for label, _, _ in runs], fontsize=8)
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    devices = []
    for name in sorted({j["device"]["name"] for _, j, _ in runs}):
        gbps = [j["ceiling"]["read_gbps"] for _, j, _ in runs if j["device"]["name"] == name]
        devices.append(f"{name} (read ceiling {min(gbps):.0f}-{max(gbps):.0f} GB/s)")
    commits = sorted({j["commit"] for _, j, _ in runs})
    fig.suptitle("pdvm decode: " + "; ".join(devices) + "\ncommits: " + ", ".join(commits), fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out} from {len(runs)} runs")


if __name__ == "__main__":
    main()
