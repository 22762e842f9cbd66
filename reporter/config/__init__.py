"""Config stage: read configs/*.yaml, validate everything, return one ProjectConfig or fail once with every issue."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from ..errors import ConfigError, Issue
from .loader import Document, parse_yaml
from .models import FILES, Kpis, Project, Report, Source, Tiers
from .rules import check_all

BUILTIN_TEMPLATES = Path(__file__).resolve().parents[2] / "report_templates"


@dataclass
class ProjectConfig:
    root: Path
    project: Project
    sources: dict[str, Source]
    kpis: Kpis
    tiers: Tiers
    reports: dict[str, Report]
    docs: dict[str, Document] = field(repr=False)
    config_sha256: str = ""

    @property
    def output_dir(self) -> Path:
        return self.root / self.project.output_dir

    def template_dirs(self) -> list[Path]:
        """The project's own templates first: they override the built-ins file by file."""
        return [d for d in _template_dirs(self.root) if d.is_dir()]


def find_config_dir(root: Path) -> Path:
    config_dir = root / "configs"
    if not config_dir.is_dir():
        raise ConfigError([Issue(f"no configs/ folder in {root}; run `reporter init {root}` to create a project, "
                                 "or pass -p/--project DIR")])
    return config_dir


def load_project(root: Path | str, environ=os.environ) -> ProjectConfig:
    root = Path(root).resolve()
    config_dir = find_config_dir(root)
    docs, issues, digest = {}, [], hashlib.sha256()
    for name in FILES:
        path = config_dir / name
        shown = str(path.relative_to(root))
        if not path.is_file():
            issues.append(Issue(f"missing file; every project has {', '.join(FILES)}", shown))
            continue
        raw = path.read_bytes()
        digest.update(name.encode() + b"\0" + raw + b"\0")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            issues.append(Issue(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", shown))
            continue
        docs[name], found = parse_yaml(text, shown, environ)
        issues += found
    if issues:
        raise ConfigError(issues)
    models = _validate_models(docs)
    issues = check_all(models, docs, lambda t: any((d / t).is_file() for d in _template_dirs(root)))
    if issues:
        raise ConfigError(issues)
    return ProjectConfig(
        root=root,
        project=models["project.yaml"],
        sources=models["sources.yaml"].sources,
        kpis=models["kpis.yaml"],
        tiers=models["tiers.yaml"],
        reports=models["reports.yaml"].reports,
        docs=docs,
        config_sha256=digest.hexdigest(),
    )


def _template_dirs(root: Path) -> list[Path]:
    return [root / "report_templates", BUILTIN_TEMPLATES]


def _validate_models(docs: dict[str, Document]) -> dict:
    from .validate import model_issues

    models, issues = {}, []
    for name, model in FILES.items():
        data = docs[name].data
        if not isinstance(data, dict):
            issues.append(Issue("expected a mapping of keys at the top of the file", docs[name].file, 1, 1))
            continue
        try:
            models[name] = model.model_validate(data)
        except ValidationError as exc:
            issues += model_issues(docs[name], model, exc)
    if issues:
        raise ConfigError(issues)
    return models
