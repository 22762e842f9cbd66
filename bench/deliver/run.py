"""The delivery benchmark: the monthly cycle of 1,000 account reviews to 200 owners plus the
leadership scorecard, through a local SMTP server.

The project is the render benchmark's (bench/render/data.py: the sample portfolio at 1,000
accounts, 200 distinct owners, every account reviewed, SMTP to 127.0.0.1:$BENCH_SMTP_PORT). An
aiosmtpd server runs in its own process (``Controller`` on 127.0.0.1, a free port), as a mail
server would, and counts what it accepts; it shares the machine's cores with the render workers. The output folder (ledger, archive) is emptied first, so everything is sent.

Two ``reporter run`` cycles, as the scheduler would run them, through ``pipeline.run_report``:
``account_reviews`` (1,000 reviews rendered, archived, one email per owner with all their
reviews) and ``leadership_scorecard`` (the portfolio scorecard in English and Chinese, one email
per leadership recipient). Before each, in the same run, the same cycle with ``--dry-run``:
load, compute and render only (the documents are written to output/reports/, nothing is
archived or sent). Each cycle's stages are timed from the pipeline's progress events.

``reporter run`` archives each document as soon as it is rendered and sends each owner's email as
soon as that owner's reviews are archived, while the workers render the rest; so the delivery
stage is measured by what it adds to the cycle: (time from the first document rendered to the
end, full cycle - the same in the dry run) / render time of the dry run. Target (issue 5): <= 10%.
A warm-up dry run comes first (not counted), so neither measured cycle pays for first imports.
Also printed: the tail after the last document is rendered, messages, and messages per second.

    python -m bench deliver [--owners 200] [--workers N]
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.render.data import GENERATED_AT, PERIOD, ensure_project

SHARE_TARGET = 0.10


@dataclass
class Counting:
    """An aiosmtpd handler that accepts every message and keeps its recipients and size."""

    messages: list[tuple[str, tuple[str, ...], int, int]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content if isinstance(envelope.content, bytes) else envelope.content.encode()
        attachments = content.count(b"Content-Disposition: attachment")
        self.messages.append((envelope.mail_from, tuple(envelope.rcpt_tos), len(content), attachments))
        return f"250 2.0.0 queued as Q{len(self.messages)}"


class Stages:
    """First and last time of each stage's progress events."""

    def __init__(self):
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.started = time.perf_counter()

    def __call__(self, stage: str, done: int, total: int, label: str = "") -> None:
        now = time.perf_counter()
        self.first.setdefault(stage, now)
        self.last[stage] = now
        if stage == "render" and total >= 100 and done and (done % 250 == 0 or done == total):
            print(f"      rendered {done:>5}/{total}  {now - self.started:6.1f} s", flush=True)

    def seconds(self, end: float) -> dict[str, float]:
        f, l = self.first, self.last  # noqa: E741
        last_render = l.get("render", l["compute"])
        return {"load": l["load"] - self.started, "compute": l["compute"] - f["compute"],
                "plan + details": f.get("render", l["compute"]) - l["compute"],
                "render": last_render - f.get("render", last_render),
                "tail": end - last_render,  # after the last document: the last archive writes and emails
                "wall": end - self.started}


class SmtpProcess:
    """The counting aiosmtpd server in a child process; ``messages()`` asks it what it has received."""

    def __init__(self, port: int):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, port), daemon=True)
        self._process.start()
        if self._conn.recv() != "ready":
            raise RuntimeError("the SMTP server did not start")

    def messages(self) -> list:
        self._conn.send("messages")
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(timeout=30)


def _serve(conn, port: int) -> None:
    from aiosmtpd.controller import Controller

    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=256 * 2**20)
    controller.start()
    conn.send("ready")
    while (command := conn.recv()) != "stop":
        if command == "messages":
            conn.send(handler.messages)
    controller.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cycle(root: Path, report: str, server: SmtpProcess, dry_run: bool = False) -> dict:
    from reporter.clock import FixedClock
    from reporter.pipeline import run_report

    before = len(server.messages())
    stages = Stages()
    summary = run_report(root, report, PERIOD, FixedClock(GENERATED_AT), progress=stages, dry_run=dry_run)
    seconds = stages.seconds(time.perf_counter())
    received = server.messages()[before:]
    return {"report": report + (" --dry-run" if dry_run else ""), "state": summary.state,
            "envelopes": summary.envelopes, "sent": len(summary.sent), "failed": summary.failed,
            "render_failures": summary.render_failures, "archived": len(summary.archived), "seconds": seconds,
            "messages": len(received), "bytes": sum(m[2] for m in received),
            "attachments": sum(m[3] for m in received), "recipients": Counter(r for m in received for r in m[1])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench deliver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None, help="render workers (default: the CPUs)")
    args = parser.parse_args(argv)

    root, generated = ensure_project(args.accounts, args.owners, args.seed)
    print(f"  project {root}" + (f" (generated in {generated:.1f} s)" if generated else " (cached)"), flush=True)
    if args.workers:
        os.environ["REPORTER_RENDER_WORKERS"] = str(args.workers)
    output = root / "output"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir()

    port = free_port()
    server = SmtpProcess(port)
    os.environ["BENCH_SMTP_PORT"] = str(port)
    load = os.getloadavg()
    try:
        # Imports, fonts, stylesheets and DuckDB warm up here, so neither measured cycle pays for them.
        print("  warm-up: reporter run --report leadership_scorecard --dry-run (not counted) ...", flush=True)
        run_cycle(root, "leadership_scorecard", server, dry_run=True)
        cycles = []
        for report in ("account_reviews", "leadership_scorecard"):
            print(f"  reporter run --report {report} --dry-run ...", flush=True)
            cycles.append(run_cycle(root, report, server, dry_run=True))
            print(f"  reporter run --report {report} (SMTP 127.0.0.1:{port}) ...", flush=True)
            cycles.append(run_cycle(root, report, server))
    finally:
        server.stop()
    result = {"cycles": cycles, "load_before": load, "load_after": os.getloadavg(), "owners": args.owners,
              "workers": args.workers or len(os.sched_getaffinity(0))}
    dry_reviews, reviews, dry_leadership, leadership = cycles
    owners_reached = {r for r in reviews["recipients"] if r.startswith("owner")}
    result["every_owner_once"] = (len(owners_reached) == args.owners
                                  and all(reviews["recipients"][r] == 1 for r in owners_reached))
    full, dry = (reviews, leadership), (dry_reviews, dry_leadership)
    wall = sum(c["seconds"]["wall"] for c in full)
    messages = sum(c["messages"] for c in full)
    render = sum(c["seconds"]["render"] for c in dry)
    # From the first document on: load, compute and the plan are the same work in both cycles.
    added = sum(c["seconds"]["render"] + c["seconds"]["tail"] for c in full) - render - sum(
        c["seconds"]["tail"] for c in dry)
    result.update(wall_s=wall, messages=messages, messages_per_s=messages / wall, render_s=render,
                  added_s=added, share=added / render, tail_s=sum(c["seconds"]["tail"] for c in full))
    print_report(result)
    return result


def print_report(result: dict) -> None:
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"\ndeliver benchmark · period {PERIOD} · {result['owners']} owners + leadership · SMTP aiosmtpd on "
          f"127.0.0.1 (own process) · {result['workers']} render workers · load average "
          f"{result['load_before'][0]:.1f} → {result['load_after'][0]:.1f}")
    names = ("load", "compute", "plan + details", "render", "tail", "wall")
    print(f"  {'cycle':<32}" + "".join(f"{n:>15}" for n in names) + f"{'messages':>10}{'MiB sent':>10}")
    for c in result["cycles"]:
        s = c["seconds"]
        print(f"  {c['report']:<32}" + "".join(f"{s.get(n, 0):>14.1f}s" for n in names)
              + f"{c['messages']:>10}{c['bytes'] / 2**20:>10.0f}")
        if c["failed"] or c["render_failures"] or c["state"] not in ("done", "dry_run"):
            print(f"    state {c['state']}: failed {c['failed'][:3]}, render failures {len(c['render_failures'])}")
    reviews = result["cycles"][1]
    print(f"  reviews: {reviews['envelopes']} emails to owners carrying {reviews['attachments']} PDFs "
          f"({reviews['archived']} archived); every owner exactly once: {verdict(result['every_owner_once'])}")
    print(f"  full cycles: {result['wall_s']:.1f} s wall for {result['messages']} messages = "
          f"{result['messages_per_s']:.2f} messages/s; {result['tail_s']:.1f} s after the last document rendered")
    print(f"  archive + deliver add {result['added_s']:.1f} s (render to end, full - dry run) = {result['share']:.1%} of their render "
          f"time {result['render_s']:.1f} s  (target ≤ {SHARE_TARGET:.0%})  {verdict(result['share'] <= SHARE_TARGET)}")


def summary(result: dict) -> str:
    return (f"deliver: cycle {result['wall_s']:.1f} s, {result['messages']} messages, "
            f"{result['messages_per_s']:.2f} messages/s · archive + deliver add {result['share']:.1%} to render "
            f"({'PASS' if result['share'] <= SHARE_TARGET else 'FAIL'} ≤ {SHARE_TARGET:.0%})")


if __name__ == "__main__":
    main()
