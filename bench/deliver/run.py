"""The delivery benchmark: the monthly cycle of 1,000 account reviews to 200 owners plus the
leadership scorecard, through a local SMTP server.

The project is the render benchmark's (bench/render/data.py: the sample portfolio at 1,000
accounts, 200 distinct owners, every account reviewed, SMTP to 127.0.0.1:$BENCH_SMTP_PORT). An
aiosmtpd server runs in this process (``Controller`` on 127.0.0.1, a free port) and counts what
it accepts. The output folder (ledger, archive) is emptied first, so everything is sent.

Two ``reporter run`` cycles, as the scheduler would run them, through ``pipeline.run_report``:
``account_reviews`` (1,000 reviews rendered, archived, one email per owner with all their
reviews) and ``leadership_scorecard`` (the portfolio scorecard in English and Chinese, one email
per leadership recipient). Each cycle's stages are timed from the pipeline's progress events:
load, compute (scorecard, then details and the audience plan), render, archive (the time between
the last document rendered and the first email) and deliver.

Printed: each cycle's wall time and stages, messages and messages per second (over the whole cycle
and over the delivery stage alone), and the delivery stage (archive + deliver: everything after
rendering) as a share of render time. Target (issue 5): <= 10%.

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
        out = {"load": l["load"] - self.started, "compute": l["compute"] - f["compute"],
               "plan + details": f.get("render", l["compute"]) - l["compute"],
               "render": l.get("render", 0) - f.get("render", 0)}
        if "deliver" in f:
            out["archive"] = f["deliver"] - l.get("render", l["compute"])
            out["deliver"] = l["deliver"] - f["deliver"]
        out["wall"] = end - self.started
        return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_cycle(root: Path, report: str, handler: Counting) -> dict:
    from reporter.clock import FixedClock
    from reporter.pipeline import run_report

    before = len(handler.messages)
    stages = Stages()
    summary = run_report(root, report, PERIOD, FixedClock(GENERATED_AT), progress=stages)
    seconds = stages.seconds(time.perf_counter())
    received = handler.messages[before:]
    return {"report": report, "state": summary.state, "envelopes": summary.envelopes, "sent": len(summary.sent),
            "failed": summary.failed, "render_failures": summary.render_failures, "archived": len(summary.archived),
            "seconds": seconds, "messages": len(received), "bytes": sum(m[2] for m in received),
            "attachments": sum(m[3] for m in received),
            "recipients": Counter(r for m in received for r in m[1])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench deliver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--owners", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None, help="render workers (default: the CPUs)")
    args = parser.parse_args(argv)

    from aiosmtpd.controller import Controller

    root, generated = ensure_project(args.accounts, args.owners, args.seed)
    print(f"  project {root}" + (f" (generated in {generated:.1f} s)" if generated else " (cached)"), flush=True)
    if args.workers:
        os.environ["REPORTER_RENDER_WORKERS"] = str(args.workers)
    output = root / "output"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir()

    handler = Counting()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, data_size_limit=256 * 2**20)
    controller.start()
    os.environ["BENCH_SMTP_PORT"] = str(port)
    load = os.getloadavg()
    try:
        cycles = []
        for report in ("account_reviews", "leadership_scorecard"):
            print(f"  reporter run --report {report} (SMTP 127.0.0.1:{port}) ...", flush=True)
            cycles.append(run_cycle(root, report, handler))
    finally:
        controller.stop()
    result = {"cycles": cycles, "load_before": load, "load_after": os.getloadavg(), "owners": args.owners,
              "workers": args.workers or len(os.sched_getaffinity(0))}
    reviews, leadership = cycles
    owners_reached = {r for r in reviews["recipients"] if r.startswith("owner")}
    result["every_owner_once"] = (len(owners_reached) == args.owners
                                  and all(reviews["recipients"][r] == 1 for r in owners_reached))
    total_wall = sum(c["seconds"]["wall"] for c in cycles)
    total_messages = sum(c["messages"] for c in cycles)
    render = sum(c["seconds"]["render"] for c in cycles)
    after = sum(c["seconds"].get("archive", 0) + c["seconds"].get("deliver", 0) for c in cycles)
    deliver = sum(c["seconds"].get("deliver", 0) for c in cycles)
    result.update(wall_s=total_wall, messages=total_messages, messages_per_s=total_messages / total_wall,
                  deliver_messages_per_s=total_messages / deliver if deliver else None,
                  render_s=render, after_render_s=after, deliver_s=deliver, share=after / render,
                  deliver_share=deliver / render)
    print_report(result)
    return result


def print_report(result: dict) -> None:
    verdict = lambda ok: "PASS" if ok else "FAIL"  # noqa: E731
    print(f"\ndeliver benchmark · period {PERIOD} · {result['owners']} owners + leadership · SMTP aiosmtpd on "
          f"127.0.0.1 (in process) · {result['workers']} render workers · load average "
          f"{result['load_before'][0]:.1f} → {result['load_after'][0]:.1f}")
    names = ("load", "compute", "plan + details", "render", "archive", "deliver", "wall")
    print(f"  {'cycle':<22}" + "".join(f"{n:>15}" for n in names) + f"{'messages':>10}{'MiB sent':>10}")
    for c in result["cycles"]:
        s = c["seconds"]
        print(f"  {c['report']:<22}" + "".join(f"{s.get(n, 0):>14.1f}s" for n in names)
              + f"{c['messages']:>10}{c['bytes'] / 2**20:>10.0f}")
        if c["failed"] or c["render_failures"] or c["state"] != "done":
            print(f"    state {c['state']}: failed {c['failed'][:3]}, render failures {len(c['render_failures'])}")
    reviews = result["cycles"][0]
    print(f"  reviews: {reviews['envelopes']} emails to owners carrying {reviews['attachments']} PDFs "
          f"({reviews['archived']} archived); every owner exactly once: {verdict(result['every_owner_once'])}")
    print(f"  whole cycle: {result['wall_s']:.1f} s wall for {result['messages']} messages = "
          f"{result['messages_per_s']:.2f} messages/s")
    print(f"  delivery stage alone: {result['deliver_s']:.2f} s = {result['deliver_messages_per_s']:.0f} messages/s")
    print(f"  after rendering (archive + deliver) {result['after_render_s']:.1f} s = {result['share']:.1%} of render "
          f"time {result['render_s']:.1f} s (deliver alone {result['deliver_share']:.1%})  "
          f"(target ≤ {SHARE_TARGET:.0%})  {verdict(result['share'] <= SHARE_TARGET)}")


def summary(result: dict) -> str:
    return (f"deliver: cycle {result['wall_s']:.1f} s, {result['messages']} messages, "
            f"{result['messages_per_s']:.2f} messages/s · archive + deliver {result['share']:.1%} of render "
            f"({'PASS' if result['share'] <= SHARE_TARGET else 'FAIL'} ≤ {SHARE_TARGET:.0%})")


if __name__ == "__main__":
    main()
