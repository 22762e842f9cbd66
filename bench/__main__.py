"""`python -m bench [names...] [options]`: run the registered benchmarks (all when no name is given).

Options after the names go to every benchmark named, e.g. `python -m bench compute --scale 0.1`.
Each benchmark is a module with ``main(argv) -> dict`` (it prints its own report) and
``summary(result) -> str`` (one line for the closing summary).
"""
from __future__ import annotations

import importlib
import sys

# Benchmarks by name: adding one is a module plus one entry here.
BENCHMARKS: dict[str, str] = {
    "compute": "bench.compute.run",
    "render": "bench.render.run",
    "deliver": "bench.deliver.run",
}


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        print(f"\nbenchmarks: {', '.join(BENCHMARKS)}; `python -m bench NAME --help` for a benchmark's options")
        return 0
    names = []
    while argv and not argv[0].startswith("-"):
        names.append(argv.pop(0))
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    summaries = []
    for name in names or list(BENCHMARKS):
        print(f"== {name}", flush=True)
        module = importlib.import_module(BENCHMARKS[name])
        result = module.main(list(argv))
        summaries.append(module.summary(result))
    print("\n== summary")
    for line in summaries:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
