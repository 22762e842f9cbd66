"""Many documents at once: (account, locale) jobs rendered by a pool of worker processes.

Reviews render independently, and rendering is CPU-bound Python (matplotlib, WeasyPrint), so the
work is spread over processes, one per core. The workers are forked from the caller once it has
warmed up (fonts loaded, the stylesheet parsed, matplotlib's font cache read), so each starts
with the scorecard, details and warm caches already in memory (copy-on-write) and nothing is
pickled but the job keys going out and the document bytes coming back.

Results come back in completion order and are returned keyed by job, so callers assemble them in
their own deterministic order; a document's bytes do not depend on which worker made it. A
``RenderError`` is that job's failure (the others go on); any other exception is raised to the
caller, as it would be in one process. If a worker dies (a crash in native code), the jobs it
left undone are rendered in this process.

Memory: each worker's resident size is reported with every result (``Rendered.rss``).
``recycle_after`` starts fresh workers after that many jobs each, should a library accumulate
memory over a long run (measured flat with WeasyPrint 70 and matplotlib 3.11: see bench/render).
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable

from ..errors import RenderError

__all__ = ["Job", "Rendered", "RenderContext", "render_documents", "default_workers", "rss_bytes"]

# Below this many reviews a pool does not pay for its start (a warm worker, ~0.5 s); a portfolio
# scorecard (seconds each) is worth one from two documents on.
MIN_JOBS_FOR_POOL = 8


@dataclass(frozen=True, order=True)
class Job:
    account_id: str | None  # None: the portfolio scorecard
    locale: str

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.account_id, self.locale)


@dataclass
class Rendered:
    job: Job
    pdf: bytes | None = None
    html: bytes | None = None
    error: str | None = None          # the RenderError's issues, joined
    pid: int = 0
    rss: int = 0                      # the worker's resident set after this job (bytes)
    peak_rss: int = 0                 # the worker's high-water mark so far (bytes)
    seconds: float = 0.0              # CPU seconds this job took in its worker


@dataclass
class RenderContext:
    """Everything a job needs; set once in the parent, inherited by the workers."""

    config: object
    report_name: str
    scorecard: dict
    details: dict
    portfolio: dict | None
    generated_at: datetime
    report_id: str
    html_dir: Path | None = None      # where render_report writes the HTML (None: no HTML)
    _charts: dict = field(default_factory=dict, repr=False)
    _accounts: dict | None = field(default=None, repr=False)

    def account(self, account_id: str) -> dict:
        if self._accounts is None:
            self._accounts = {a["account_id"]: a for a in self.scorecard["accounts"]}
        return self._accounts[account_id]

    def charts_for(self, locale: str):
        from .chart_set import charts_for_report

        if locale not in self._charts:
            formats = ("png", "svg") if self.html_dir is not None else ("png",)
            self._charts[locale] = charts_for_report(self.config, self.report_name, self.scorecard, self.details,
                                                     self.portfolio, locale, formats=formats)
        return self._charts[locale]


# --------------------------------------------------------------------------- one job

def render_one(context: RenderContext, job: Job) -> Rendered:
    """The PDF/A-3b (and, with ``html_dir``, the HTML) of one job, in this process."""
    import time

    from . import archive_pdf_bytes, render_report

    started = time.process_time()
    account_id, locale = job.account_id, job.locale
    result = Rendered(job, pid=os.getpid())
    try:
        subject = context.account(account_id) if account_id else None
        charts = context.charts_for(locale)
        result.pdf = archive_pdf_bytes(
            context.config, context.report_name, context.scorecard, account_id,
            context.details.get(account_id) if account_id else context.portfolio,
            charts=charts(subject), generated_at=context.generated_at, report_id=context.report_id, locale=locale)
        if context.html_dir is not None:
            artifact = render_report(context.config, context.report_name, context.scorecard, context.details,
                                     context.portfolio, charts, context.html_dir / locale, formats=("html",),
                                     locale=locale, accounts=[account_id] if account_id else None,
                                     generated_at=context.generated_at, report_id=context.report_id)[0]
            result.html = artifact.path.read_bytes()
    except RenderError as exc:
        if account_id is None:
            raise
        result.pdf = result.html = None
        result.error = "; ".join(str(i) for i in exc.issues)
    result.seconds = time.process_time() - started
    result.rss, result.peak_rss = rss_bytes()
    return result


# --------------------------------------------------------------------------- workers

_CONTEXT: RenderContext | None = None


def _init_worker(context: RenderContext | None) -> None:
    global _CONTEXT
    if context is not None:  # spawn/forkserver: the context came pickled
        _CONTEXT = context
    gc.freeze()  # the inherited objects are never collected here: keep them out of every collection


def _work(job: Job) -> Rendered:
    assert _CONTEXT is not None, "render worker started without a context"
    return render_one(_CONTEXT, job)


def rss_bytes() -> tuple[int, int]:
    """(current, peak) resident set size of this process in bytes (Linux; else the peak twice)."""
    current = peak = 0
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    current = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    except OSError:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
        current = peak
    return current, peak


def default_workers() -> int:
    """``REPORTER_RENDER_WORKERS`` if set, else the CPUs this process may run on."""
    configured = os.environ.get("REPORTER_RENDER_WORKERS", "").strip()
    if configured:
        try:
            return max(1, int(configured))
        except ValueError:
            raise RenderError(f"REPORTER_RENDER_WORKERS={configured!r} is not a whole number") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def render_documents(context: RenderContext, jobs: Iterable[Job], *, workers: int | None = None,
                     recycle_after: int | None = None,
                     progress: Callable[[int, int, Rendered], None] | None = None) -> dict[tuple, Rendered]:
    """Render ``jobs``; returns ``{job.key: Rendered}``. ``progress(done, total, rendered)`` after each.

    ``workers``: processes to use (default: ``default_workers()``); one, or fewer jobs than
    MIN_JOBS_FOR_POOL (unless two or more with a portfolio scorecard), renders in this process.
    ``recycle_after``: jobs per worker before the pool is replaced by fresh workers (None: never).
    """
    # The portfolio (slowest) first, then the reviews in the caller's order: `reporter run` lists
    # them envelope by envelope, so each owner's email can go out while the rest still render.
    jobs = sorted(dict.fromkeys(jobs), key=lambda j: j.account_id is not None)
    total = len(jobs)
    workers = min(default_workers() if workers is None else max(1, workers), total or 1)
    results: dict[tuple, Rendered] = {}

    def done(rendered: Rendered) -> None:
        results[rendered.job.key] = rendered
        if progress:
            progress(len(results), total, rendered)

    # A portfolio scorecard takes seconds on its own: two of them (two locales) are worth a pool.
    worth_a_pool = total >= MIN_JOBS_FOR_POOL or (total >= 2 and any(j.account_id is None for j in jobs))
    if workers <= 1 or not worth_a_pool:
        for job in jobs:
            done(render_one(context, job))
        return results

    global _CONTEXT
    pending = list(jobs)
    # The first review is rendered here before the workers are forked: it loads the fonts,
    # matplotlib's caches and the parsed stylesheet once, and every worker starts warm.
    first = next((job for job in pending if job.account_id is not None), None)
    if first is not None:
        pending.remove(first)
        done(render_one(context, first))
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    mp_context = multiprocessing.get_context(method)
    previous, _CONTEXT = _CONTEXT, context
    # What exists now (the loaded data, the scorecard) stays put while the documents stream in:
    # out of the collector's sight, later collections only look at what is new.
    gc.freeze()
    try:
        while pending:
            batch_size = len(pending) if recycle_after is None else workers * recycle_after
            batch, pending = pending[:batch_size], pending[batch_size:]
            try:
                _run_pool(mp_context, workers, context if method != "fork" else None, batch, done)
            except BrokenProcessPool:
                for job in batch:  # a worker died: what it left undone is rendered here
                    if job.key not in results:
                        done(render_one(context, job))
    finally:
        _CONTEXT = previous
        gc.unfreeze()
    return results


def _run_pool(mp_context, workers: int, initarg, jobs: list[Job], done: Callable[[Rendered], None]) -> None:
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=mp_context,
                             initializer=_init_worker, initargs=(initarg,)) as pool:
        # At most two jobs queued per worker: results stream back while the rest wait here.
        queue = list(reversed(jobs))
        running = set()
        while queue or running:
            while queue and len(running) < 2 * workers:
                running.add(pool.submit(_work, queue.pop()))
            finished, running = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                done(future.result())
