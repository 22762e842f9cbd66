"""`reporter init`: a new project from the shipped example configs, optionally with sample data."""
from __future__ import annotations

import shutil
from pathlib import Path

from ..config import BUILTIN_TEMPLATES

EXAMPLE_CONFIGS = BUILTIN_TEMPLATES.parent / "configs"


def init_project(directory: Path, sample: bool, accounts: int, months: int, seed: int, end: str,
                 force: bool = False) -> list[str]:
    """Write configs/ (kept if present, unless force) and, with sample, data/demo/. Returns lines to print."""
    directory = Path(directory)
    config_dir = directory / "configs"
    lines = []
    if config_dir.exists() and not force:
        lines.append(f"{config_dir} exists: kept as it is (--force overwrites it)")
    else:
        config_dir.mkdir(parents=True, exist_ok=True)
        for source in sorted(EXAMPLE_CONFIGS.iterdir()):
            if source.suffix in (".yaml", ".json"):
                shutil.copyfile(source, config_dir / source.name)
        lines.append(f"wrote {config_dir}/ (project, sources, kpis, tiers, reports .yaml and schema.json)")
    (directory / "output").mkdir(exist_ok=True)
    if sample:
        from .data import write_sample_data

        truth = write_sample_data(directory / "data" / "demo", accounts=accounts, months=months, seed=seed, end=end)
        counts = ", ".join(f"{n} {entity}" for entity, n in sorted(truth["row_counts"].items()))
        lines.append(f"wrote sample data to {directory / 'data' / 'demo'}/: {counts}")
        lines.append(f"  {len(truth['deteriorating'])} deteriorating, {len(truth['churned'])} churned and "
                     f"{len(truth['new'])} new accounts; {len(truth['dirty_rows'])} dirty rows for validation to reject")
    lines.append(f"next: reporter validate -p {directory}")
    return lines
