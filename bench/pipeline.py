"""Throughput of the embedded pipeline in sync-only mode (launch.mode = off): N coins,
images served over HTTP on 127.0.0.1, the folder library, the real `moonshot run
--once` in a child process; then the baseline (bench.baseline) on the same URLs."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

from bench import imageset
from bench.server import ImageServer
from bench.stats import ROOT, pct, run_child, stage_latencies
from moonshot.ports import IncomingCoin
from moonshot.store import Store

DEFAULT_MAX_SIDE = {"typical": 0, "large": 1024}
CACHE = Path(tempfile.gettempdir()) / "moonshot-bench-images"


def write_config(home: Path, max_side: int) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "moonshot.toml").write_text(
        "[launch]\nmode = 'off'\n"
        f"[spool]\nmax_side = {max_side}\nallowed_hosts = ['127.0.0.1']\n"
        "[photos]\nkind = 'folder'\n"
    )


def enqueue(home: Path, urls: list[str]) -> None:
    """What `moonshot add` does, without one process per coin."""
    store = Store(home / "moonshot.db")
    for i, url in enumerate(urls):
        coin = IncomingCoin("local", f"bench:{i}", f"B{i}", f"Bench coin {i}", url, "bench")
        store.add_coin(coin, twitter_user="bench")
    store.close()


def check(home: Path, n: int) -> dict[str, int]:
    db = sqlite3.connect(f"file:{home / 'moonshot.db'}?mode=ro", uri=True)
    states = dict(db.execute("SELECT state, count(*) FROM coins GROUP BY state").fetchall())
    db.close()
    lib = sqlite3.connect(f"file:{home / 'library' / 'library.db'}?mode=ro", uri=True)
    assets, names = lib.execute(
        "SELECT count(*), count(DISTINCT original_filename) FROM assets"
    ).fetchone()
    lib.close()
    if states.get("confirmed") != n or assets != n or names != n:
        raise SystemExit(f"pipeline did not confirm every coin once: {states}, {assets} assets")
    return states


def baseline(tmpd: Path, max_side: int, tag: str) -> tuple[float, float, int, float]:
    out = run_child(
        [
            sys.executable,
            "-m",
            "bench.baseline",
            "--urls",
            str(tmpd / "urls.txt"),
            "--out",
            str(tmpd / f"baseline-{tag}"),
            "--max-side",
            str(max_side),
        ],
        tmpd / f"baseline-{tag}.log",
    )
    if out[2] != 0:
        log = (tmpd / f"baseline-{tag}.log").read_text()[-2000:]
        raise SystemExit(f"baseline exited {out[2]}: {log}")
    return out


def ms(v: float | None) -> float | None:
    return None if v is None else round(v * 1000, 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", dest="kind", choices=imageset.SETS, default="typical")
    ap.add_argument("--coins", type=int, default=500)
    ap.add_argument(
        "--max-side",
        type=int,
        default=None,
        help="spool.max_side for both (default: 0 = keep the size for typical, 1024 for large:"
        " JPEG draft mode decodes a 4000x3000 photo at half size)",
    )
    ap.add_argument("--cache", type=Path, default=CACHE, help="generated images are kept here")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if a.max_side is None:
        a.max_side = DEFAULT_MAX_SIDE[a.kind]
    samples = imageset.pool(a.kind, a.cache)
    sizes = [len(s.data) for s in samples]
    with tempfile.TemporaryDirectory(prefix="moonshot-bench-") as tmp, ImageServer() as srv:
        tmpd = Path(tmp)
        urls = []
        for i in range(a.coins):
            s = samples[i % len(samples)]
            urls.append(srv.serve(f"/img/{i}/{s.name}", s.data, s.content_type))
        home = tmpd / "home"
        write_config(home, a.max_side)
        enqueue(home, urls)
        (tmpd / "urls.txt").write_text("\n".join(urls))
        # The baseline runs before and after the pipeline and the two are averaged,
        # so a change of load on a shared machine weighs on both sides alike.
        base1 = baseline(tmpd, a.max_side, "before")
        t_pipe, rss_pipe, rc, cpu_pipe = run_child(
            [sys.executable, "-m", "moonshot", "--home", str(home), "run", "--once"],
            tmpd / "run.log",
        )
        if rc != 0:
            raise SystemExit(f"moonshot run exited {rc}: {(tmpd / 'run.log').read_text()[-2000:]}")
        check(home, a.coins)
        lat = stage_latencies(home / "moonshot.db")
        base2 = baseline(tmpd, a.max_side, "after")
    t_base = (base1[0] + base2[0]) / 2
    cpu_base = (base1[3] + base2[3]) / 2
    rss_base = max(base1[1] or 0.0, base2[1] or 0.0)
    result = {
        "set": a.kind,
        "coins": a.coins,
        "max_side": a.max_side,
        "image_kb_min": round(min(sizes) / 1024),
        "image_kb_max": round(max(sizes) / 1024),
        "pipeline_s": round(t_pipe, 3),
        "baseline_s": round(t_base, 3),
        "baseline_runs_s": [round(base1[0], 3), round(base2[0], 3)],
        "coins_per_s": round(a.coins / t_pipe, 2),
        "baseline_coins_per_s": round(a.coins / t_base, 2),
        "baseline_ratio": round(t_pipe / t_base, 3),
        "cpu_s": round(cpu_pipe, 3),
        "baseline_cpu_s": round(cpu_base, 3),
        "cpu_ratio": round(cpu_pipe / cpu_base, 3),
        "peak_rss_mb": round(rss_pipe or 0.0, 1),
        "baseline_peak_rss_mb": round(rss_base, 1),
        "stages_ms": {k: {"p50": ms(pct(v, 50)), "p95": ms(pct(v, 95))} for k, v in lat.items()},
        "command": f"python -m bench.pipeline --set {a.kind} --coins {a.coins}",
    }
    if a.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{a.kind}: {a.coins} coins ({result['image_kb_min']}-{result['image_kb_max']} KB)"
            f" in {t_pipe:.2f} s = {result['coins_per_s']} coins/s;"
            f" baseline {t_base:.2f} s; ratio {result['baseline_ratio']}x"
            f" (CPU {cpu_pipe:.1f} s vs {cpu_base:.1f} s: {result['cpu_ratio']}x);"
            f" peak RSS {result['peak_rss_mb']} MB (baseline {result['baseline_peak_rss_mb']} MB)"
        )
        for k, v in result["stages_ms"].items():
            print(f"  {k:<8} p50 {v['p50']} ms  p95 {v['p95']} ms")
    return result


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
