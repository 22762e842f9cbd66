"""The render benchmark: 1,000 account reviews and the portfolio scorecard over the same accounts.

1. Data (cached on disk, not timed): the sample project at ``--accounts`` accounts (bench/render/
   data.py), loaded and computed once: ``pipeline.load`` + ``compute_scorecard`` +
   ``compute.details``, plus each account's 12-month health history (so every review draws six
   charts).
2. Reviews: every account's review as the archived PDF/A-3b, through ``render.pool.render_documents``
   (what ``pipeline._render_documents``, i.e. ``reporter run``, calls) with ``--workers`` processes.
   Timed from the call to the last document back in this process. Prints reviews per second,
   each worker's resident memory after 100, 500 and 1,000 reviews (RSS, and USS: the pages only
   that worker holds) and its peak.
3. Portfolio scorecard: the leadership document over the same accounts, alone, timed.
4. Baseline, in a fresh process (bench/render/baseline.py): pyplot charts + stock WeasyPrint, one
   account after another, on the first ``--baseline-accounts`` accounts; its time per review
   gives the naive reviews per second, and the ratio.

Targets (issue 4, 2 cores): >= 8 reviews/s and >= 6x the baseline; portfolio <= 15 s; memory flat
after the first 100 reviews (here: RSS at 1,000 within 10% of RSS at 100).

    python -m bench render [--accounts 1000] [--workers 2] [--baseline-accounts 50]
                           [--baseline-format svg|png] [--no-baseline]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .data import GENERATED_AT, PERIOD, REPO, ensure_computed, ensure_project

MIB = 2**20
RATE_TARGET = 8.0
RATIO_TARGET = 6.0
PORTFOLIO_TARGET_S = 15.0
FLAT_TOLERANCE = 0.10
CHECKPOINTS = (100, 500, 1000)


def smaps(pid: int) -> dict[str, int]:
    """Rss, Pss and USS (private clean + dirty) of a process in bytes, from /proc (Linux)."""
    values = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
                    values[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        return {}
    return {"rss": values.get("Rss", 0), "pss": values.get("Pss", 0),
            "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)}


def render_reviews(root: Path, computed, workers: int, accounts: int, recycle_after: int | None) -> dict:
    from reporter.config import load_project
    from reporter.render.pool import Job, RenderContext, render_documents

    config = load_project(root)
    report = "account_reviews"
    context = RenderContext(config, report, computed.scorecard, computed.details, computed.portfolio,
                            GENERATED_AT, computed.report_ids[report])
    ids = [a["account_id"] for a in computed.scorecard["accounts"]][:accounts]
    checkpoints = [c for c in CHECKPOINTS if c <= len(ids)] or [len(ids)]
    if checkpoints[-1] != len(ids):
        checkpoints.append(len(ids))
    latest: dict[int, tuple[int, int]] = {}    # worker pid -> (rss, peak) from its last result
    at: dict[int, dict] = {}
    cpu: list[float] = []

    def progress(done: int, total: int, rendered) -> None:
        latest[rendered.pid] = (rendered.rss, rendered.peak_rss)
        cpu.append(rendered.seconds)
        if done in checkpoints:
            at[done] = {"elapsed_s": time.perf_counter() - started,
                        "workers": {pid: {"rss": rss, "peak": peak, **smaps(pid)}
                                    for pid, (rss, peak) in sorted(latest.items()) if pid != os.getpid()}}
        if done % 100 == 0 or done == total:
            print(f"    {done:>5}/{total} reviews  {time.perf_counter() - started:6.1f} s", flush=True)

    started = time.perf_counter()
    results = render_documents(context, [Job(a, "en") for a in ids], workers=workers, recycle_after=recycle_after,
                               progress=progress)
    wall = time.perf_counter() - started
    failed = {k: r.error for k, r in results.items() if r.error}
    pdfs = [results[(a, "en")].pdf for a in ids if results[(a, "en")].pdf]
    return {"reviews": len(ids), "failed": failed, "wall_s": wall, "reviews_per_s": len(ids) / wall,
            "worker_cpu_s_per_review": statistics.mean(cpu), "checkpoints": at,
            "peak_rss": {pid: peak for pid, (_, peak) in latest.items() if pid != os.getpid()},
            "parent_pid": os.getpid(), "sample": _sample_pdfs(pdfs), "mean_pdf_bytes": statistics.mean(map(len, pdfs)),
            "results": results, "ids": ids, "context": context}


def _sample_pdfs(pdfs: list[bytes], n: int = 25) -> dict:
    """Pages and images of an evenly spread sample of the PDFs (pypdf)."""
    import io

    from pypdf import PdfReader

    step = max(1, len(pdfs) // n)
    pages, images = [], []
    for pdf in pdfs[::step][:n]:
        reader = PdfReader(io.BytesIO(pdf))
        pages.append(len(reader.pages))
        drawn = set()
        for page in reader.pages:  # the images each page draws (its resources may list them all)
            contents = page.get_contents()
            content = contents.get_data() if contents is not None else b""
            xobjects = (page["/Resources"].get("/XObject") or {})
            drawn |= {name for name in xobjects if f"{name} Do".encode() in content}
        images.append(len(drawn))
    return {"n": len(pages), "pages_min": min(pages), "pages_median": statistics.median(pages),
            "pages_max": max(pages), "charts_min": min(images), "charts_max": max(images)}


def check_determinism(review: dict, n: int = 3) -> bool:
    """A few reviews rendered again here, in this process: byte-identical to the pool's."""
    from reporter.render.pool import Job, render_one

    context, results = review["context"], review["results"]
    picks = review["ids"][:: max(1, len(review["ids"]) // n)][:n]
    return all(render_one(context, Job(a, "en")).pdf == results[(a, "en")].pdf for a in picks)


def render_portfolio(root: Path, computed) -> dict:
    import io

    from pypdf import PdfReader

    from reporter.config import load_project
    from reporter.render.pool import Job, RenderContext, render_documents

    config = load_project(root)
    report = "leadership_scorecard"
    context = RenderContext(config, report, computed.scorecard, computed.details, computed.portfolio,
                            GENERATED_AT, computed.report_ids[report])
    started = time.perf_counter()
    result = render_documents(context, [Job(None, "en")])[(None, "en")]
    wall = time.perf_counter() - started
    return {"wall_s": wall, "pages": len(PdfReader(io.BytesIO(result.pdf)).pages), "bytes": len(result.pdf),
            "accounts": len(computed.scorecard["accounts"])}


def run_baseline(root: Path, accounts: int, fmt: str) -> dict:
    child = [sys.executable, "-m", "bench.render.baseline", "--project", str(root), "--accounts", str(accounts),
             "--format", fmt]
    out = subprocess.run(child, check=True, cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- printing

def _mib(n: int) -> str:
    return f"{n / MIB:,.0f}"


def print_report(result: dict) -> None:
    r, p, b = result["reviews"], result.get("portfolio"), result.get("baseline")
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"\nrender benchmark · {r['reviews']:,} account reviews (PDF/A-3b) · {result['workers']} workers on "
          f"{result['cpus']} CPUs · period {PERIOD}")
    s = r["sample"]
    print(f"  each review: {s['pages_min']}-{s['pages_max']} pages (median {s['pages_median']:g}), "
          f"{s['charts_min']}-{s['charts_max']} charts (sample of {s['n']}); "
          f"mean {r['mean_pdf_bytes'] / 1024:,.0f} KiB")
    if r["failed"]:
        print(f"  FAILED to render: {len(r['failed'])} ({next(iter(r['failed'].items()))})")
    print(f"  reviews: {r['wall_s']:.1f} s wall, {r['reviews_per_s']:.2f} reviews/s  (target ≥ {RATE_TARGET:g})  "
          f"{verdict(r['reviews_per_s'] >= RATE_TARGET)}")
    cpu = r["worker_cpu_s_per_review"]
    print(f"    CPU per review in a worker: {cpu * 1000:.0f} ms, so {result['workers'] / cpu:.2f} reviews/s with "
          f"{result['workers']} workers on otherwise idle cores; load average during the run "
          f"{result['load_before'][0]:.1f} → {result['load_after'][0]:.1f} (other processes share these CPUs)")
    if b:
        ratio = r["reviews_per_s"] / b["reviews_per_s"]
        print(f"  baseline (pyplot {b['format'].upper()} charts + stock WeasyPrint, one process, first "
              f"{b['accounts']} accounts): {b['s_per_review']:.2f} s per review = {b['reviews_per_s']:.3f} reviews/s "
              f"(→ {1000 * b['s_per_review'] / 60:.1f} min for 1,000)")
        print(f"  ratio: {ratio:.1f}x the baseline  (target ≥ {RATIO_TARGET:g}x)  {verdict(ratio >= RATIO_TARGET)}")
        cpu_ratio = (b["cpu_s"] / b["accounts"]) / (r["worker_cpu_s_per_review"] / result["workers"])
        print(f"    by CPU time (less sensitive to other load): baseline {b['cpu_s'] / b['accounts'] * 1000:.0f} ms "
              f"per review in one process vs {r['worker_cpu_s_per_review'] * 1000:.0f} ms per review in each of "
              f"{result['workers']} workers: {cpu_ratio:.1f}x")
    print("  worker memory (MiB)       " + "".join(f"{'after ' + str(c):>22}" for c in r["checkpoints"])
          + f"{'peak':>10}")
    pids = sorted({pid for cp in r["checkpoints"].values() for pid in cp["workers"]})
    for pid in pids:
        cells = []
        for cp in r["checkpoints"].values():
            w = cp["workers"].get(pid)
            cells.append(f"RSS {_mib(w['rss'])} / USS {_mib(w.get('uss', 0))}" if w else "-")
        print(f"    worker {pid:<8}       " + "".join(f"{c:>22}" for c in cells)
              + f"{_mib(r['peak_rss'].get(pid, 0)):>10}")
    print(f"  memory flat after the first 100 (RSS at the end within {FLAT_TOLERANCE:.0%} of RSS after 100): "
          f"{verdict(result['memory_flat'])}  (growth {result['memory_growth']:+.1%})")
    print(f"  parent (holds every PDF for delivery): RSS {_mib(result['parent_rss'])} MiB")
    if p:
        print(f"  portfolio scorecard over {p['accounts']:,} accounts: {p['wall_s']:.1f} s, {p['pages']} pages, "
              f"{p['bytes'] / 1024:,.0f} KiB  (target ≤ {PORTFOLIO_TARGET_S:g} s)  "
              f"{verdict(p['wall_s'] <= PORTFOLIO_TARGET_S)}")
    print(f"  pool output = in-process output, byte for byte: {verdict(result['deterministic'])}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench render", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--recycle-after", type=int, default=None, help="jobs per worker before fresh workers")
    parser.add_argument("--baseline-accounts", type=int, default=50)
    parser.add_argument("--baseline-format", choices=("svg", "png"), default="svg")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-portfolio", action="store_true")
    args = parser.parse_args(argv)

    from reporter.render.pool import rss_bytes

    root, generated = ensure_project(max(args.accounts, 1000), args.owners, args.seed)
    print(f"  project {root}" + (f" (generated in {generated:.1f} s)" if generated else " (cached)"), flush=True)
    computed = ensure_computed(root)
    if computed.cached:
        print("  load + compute: cached", flush=True)
    else:
        print("  load + compute: " + ", ".join(f"{k} {v:.1f} s" for k, v in computed.seconds.items()), flush=True)

    print(f"  rendering {args.accounts:,} reviews with {args.workers} workers ...", flush=True)
    load_before = os.getloadavg()
    reviews = render_reviews(root, computed, args.workers, args.accounts, args.recycle_after)
    deterministic = check_determinism(reviews)
    parent_rss = rss_bytes()[0]
    marks = reviews["checkpoints"]
    first, last = marks[min(marks)], marks[max(marks)]
    growth = max(((last["workers"][pid]["rss"] - w["rss"]) / w["rss"]
                  for pid, w in first["workers"].items() if pid in last["workers"]), default=0.0)
    for key in ("results", "context", "ids"):
        del reviews[key]
    result = {"workers": args.workers, "cpus": len(os.sched_getaffinity(0)), "reviews": reviews,
              "load_before": load_before, "load_after": os.getloadavg(),
              "deterministic": deterministic, "parent_rss": parent_rss, "memory_growth": growth,
              "memory_flat": growth <= FLAT_TOLERANCE}
    if not args.no_portfolio:
        print("  rendering the portfolio scorecard ...", flush=True)
        result["portfolio"] = render_portfolio(root, computed)
    if not args.no_baseline:
        print(f"  baseline on {args.baseline_accounts} accounts in a fresh process ...", flush=True)
        result["baseline"] = run_baseline(root, args.baseline_accounts, args.baseline_format)
        result["ratio"] = reviews["reviews_per_s"] / result["baseline"]["reviews_per_s"]
    print_report(result)
    return result


def summary(result: dict) -> str:
    r = result["reviews"]
    parts = [f"render: {r['reviews_per_s']:.2f} reviews/s ({'PASS' if r['reviews_per_s'] >= RATE_TARGET else 'FAIL'} "
             f"≥ {RATE_TARGET:g})"]
    if "ratio" in result:
        parts.append(f"{result['ratio']:.1f}x baseline ({'PASS' if result['ratio'] >= RATIO_TARGET else 'FAIL'} "
                     f"≥ {RATIO_TARGET:g}x)")
    if "portfolio" in result:
        p = result["portfolio"]["wall_s"]
        parts.append(f"portfolio {p:.1f} s ({'PASS' if p <= PORTFOLIO_TARGET_S else 'FAIL'} ≤ {PORTFOLIO_TARGET_S:g})")
    parts.append(f"memory {'flat' if result['memory_flat'] else 'GROWS'} ({result['memory_growth']:+.1%})")
    return " · ".join(parts)


if __name__ == "__main__":
    main()
