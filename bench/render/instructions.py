"""Instructions per account review, counted by valgrind: a figure that other load cannot move.

On a shared 2-CPU machine the CPU time of the same review varies by ±20% from run to run, too
much to see a 3% change. This counts the instructions one review takes instead (cachegrind,
no cache simulation): one child process renders ``--reviews`` reviews of the render benchmark's
project in process, another renders none; the difference divided by the count is the cost of a
review without the start-up (imports, fonts, the first stylesheet parse). Run it on two commits
to compare them. Not part of ``make bench``: it takes a few minutes and needs valgrind.

    python -m bench.render.instructions [--reviews 6] [--first 20] [--locale en]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from .data import GENERATED_AT, REPO, ensure_computed, ensure_project

_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _child(first: int, count: int, locale: str) -> None:
    """Render ``count`` reviews in this process (what the parent counts under valgrind)."""
    from reporter.config import load_project
    from reporter.render.pool import Job, RenderContext, render_one

    root, _ = ensure_project()
    computed = ensure_computed(root)
    context = RenderContext(load_project(root), "account_reviews", computed.scorecard, computed.details,
                            computed.portfolio, GENERATED_AT, computed.report_ids["account_reviews"])
    for account in computed.scorecard["accounts"][first:first + count]:
        result = render_one(context, Job(account["account_id"], locale))
        if result.error:
            raise SystemExit(f"{account['account_id']}: {result.error}")


def _count(first: int, count: int, locale: str) -> int:
    command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
               sys.executable, "-m", "bench.render.instructions", "--child", str(count), "--first", str(first),
               "--locale", locale]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    found = _REFS.search(done.stderr)
    if done.returncode or not found:
        raise SystemExit(f"valgrind run failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.render.instructions", description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=int, default=6, help="reviews counted (default 6)")
    parser.add_argument("--first", type=int, default=20, help="index of the first account (default 20)")
    parser.add_argument("--locale", default="en")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        _child(args.first, args.child, args.locale)
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt-get install valgrind", file=sys.stderr)
        return 2
    root, _ = ensure_project()
    ensure_computed(root)  # here, not under valgrind: a stale cache is recomputed at full speed
    print(f"counting instructions: {args.reviews} reviews ({args.locale}) from account #{args.first}, "
          "and none (start-up), under cachegrind ...", flush=True)
    with ThreadPoolExecutor(2) as pool:
        start_up, total = pool.map(lambda n: _count(args.first, n, args.locale), (0, args.reviews))
    per_review = (total - start_up) / args.reviews
    print(f"  start-up {start_up / 1e9:.2f} G instructions; with the reviews {total / 1e9:.2f} G")
    print(f"  per review: {per_review / 1e9:.3f} G instructions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
