#!/usr/bin/env python3
"""weir sketches vs Apache DataSketches (PyPI `datasketches`, C++ core) on the same data.

    python3 bench/sketches/compare.py            # sets up ~/.cache/weir-sketches-venv

Writes the data sets (numpy, fixed seeds) to a temp dir, runs weir's sketches on them through
`bench/sketches/crates-compare -- --data DIR` (release build) and DataSketches in this
process, and prints accuracy and speed side by side with the ratio weir / DataSketches.

Speed caveat: DataSketches' HLL and frequent-items sketches are fed one Python call per item;
the script measures the bare Python loop (calling a no-op builtin) and also prints the
DataSketches time with that overhead subtracted. KLL is fed in one batched numpy call.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
VENV = os.path.expanduser("~/.cache/weir-sketches-venv")
N = 1_000_000


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if sys.prefix == VENV:
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "datasketches==5.2.0", "numpy"])
    os.execv(py, [py, os.path.abspath(__file__)] + sys.argv[1:])


def main():
    ensure_venv()
    import numpy as np
    import datasketches as ds

    rng = np.random.default_rng(2026)
    tmp = tempfile.mkdtemp(prefix="weir-sk-")
    keys = rng.integers(0, 2**63 - 1, N, dtype=np.uint64)
    true_distinct = len(np.unique(keys))
    keys.astype("<u8").tofile(os.path.join(tmp, "distinct.u64"))
    data = {
        "uniform": rng.uniform(0, 1000, N),
        "lognormal": rng.lognormal(3.0, 1.5, N),
        "pareto": rng.pareto(1.2, N) + 1.0,
    }
    for name, arr in data.items():
        arr.astype("<f8").tofile(os.path.join(tmp, f"{name}.f64"))
    n_items = 100_000
    p = 1.0 / np.arange(1, n_items + 1) ** 1.1
    p /= p.sum()
    zipf = rng.choice(n_items, size=N, p=p).astype(np.uint64) + 1
    zipf.astype("<u8").tofile(os.path.join(tmp, "zipf.u64"))

    manifest = os.path.join(HERE, "crates-compare", "Cargo.toml")
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/weir-sk-compare-target"))
    out = subprocess.check_output(
        ["cargo", "run", "-q", "--release", "--manifest-path", manifest, "--", "--data", tmp],
        env=env,
    )
    weir = json.loads(out)

    # Bare Python loop cost (one builtin call per item).
    key_list = keys.tolist()
    t = time.perf_counter()
    f = id
    for x in key_list:
        f(x)
    loop_ns = (time.perf_counter() - t) / N * 1e9

    rows = []

    def row(what, w, d, unit="", note=""):
        ratio = (w / d) if d else float("nan")
        rows.append((what, w, d, ratio, unit, note))

    # HLL lgK=12 HLL_8 vs weir p=12
    h = ds.hll_sketch(12, ds.tgt_hll_type.HLL_8)
    upd = h.update
    t = time.perf_counter()
    for x in key_list:
        upd(x)
    ds_ns = (time.perf_counter() - t) / N * 1e9
    w_err = (weir["hll"]["estimate"] - true_distinct) / true_distinct * 100
    d_err = (h.get_estimate() - true_distinct) / true_distinct * 100
    rows.append(("HLL p=12: error vs %d distinct" % true_distinct, w_err, d_err, None, "%", ""))
    row("HLL ns/update", weir["hll"]["ns"], ds_ns, "ns", "DataSketches incl. Python call")
    row("HLL ns/update (DS minus bare loop %.0f ns)" % loop_ns, weir["hll"]["ns"], max(ds_ns - loop_ns, 0.1), "ns")
    row("HLL bytes serialized", weir["hll"]["bytes"], len(h.serialize_compact()), "B", "HLL_8 compact")

    qs = [0.5, 0.95, 0.99, 0.999]
    for name, arr in data.items():
        srt = np.sort(arr)
        k = ds.kll_doubles_sketch(200)
        t = time.perf_counter()
        k.update(arr)
        kll_ns = (time.perf_counter() - t) / N * 1e9
        for i, q in enumerate(qs):
            exact = srt[int(np.floor(q * (N - 1)))]
            w = abs(weir[name]["quantiles"][i] - exact) / exact * 100
            d = abs(k.get_quantile(q) - exact) / exact * 100
            rows.append((f"{name} p{q*100:g}: relative error (DDSketch 1% vs KLL k=200)", w, d, None, "%", ""))
        row(f"{name}: ns/update", weir[name]["ns"], kll_ns, "ns", "KLL batched numpy update")
        row(f"{name}: bytes serialized", weir[name]["bytes"], len(k.serialize()), "B")

    # Top-10 on Zipf(1.1)
    counts = np.bincount(zipf.astype(np.int64))
    true_top = set(int(i) for i in np.argsort(-counts)[:10])
    fi = ds.frequent_strings_sketch(7)  # max map size 128 (weir: capacity 100)
    zs = [str(int(v)) for v in zipf]
    upd = fi.update
    t = time.perf_counter()
    for s in zs:
        upd(s)
    fi_ns = (time.perf_counter() - t) / N * 1e9
    ds_top = [int(r[0]) for r in fi.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)[:10]]
    w_top = [int(e[0]) for e in weir["topk"]["top"]]
    rows.append(("top-10 recall on Zipf(1.1)", len(true_top & set(w_top)), len(true_top & set(ds_top)), None, "/10", ""))
    row("top-k ns/update", weir["topk"]["ns"], fi_ns, "ns", "DataSketches: strings, incl. Python call")
    row("top-k ns/update (DS minus bare loop)", weir["topk"]["ns"], max(fi_ns - loop_ns, 0.1), "ns")

    print(f"weir sketches vs Apache DataSketches {ds.__name__} 5.2 (PyPI), N = {N:,}, {time.strftime('%Y-%m-%d')}")
    print("| measure | weir | DataSketches | weir / DS | note |")
    print("|---|---|---|---|---|")
    for what, w, d, ratio, unit, note in rows:
        r = "" if ratio is None else f"{ratio:.2f}×"
        print(f"| {what} | {w:.3g} {unit} | {d:.3g} {unit} | {r} | {note} |")


if __name__ == "__main__":
    main()
