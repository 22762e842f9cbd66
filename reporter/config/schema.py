"""configs/schema.json: one JSON Schema that editors apply to every file of configs/."""
from __future__ import annotations

import json

from pydantic.json_schema import models_json_schema

from .models import FILES


def project_schema() -> dict:
    refs, schema = models_json_schema([(model, "validation") for model in FILES.values()],
                                      ref_template="#/$defs/{model}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "reporter project file (project, sources, kpis, tiers or reports .yaml)",
        "anyOf": [refs[(model, "validation")] for model in FILES.values()],
        "$defs": schema["$defs"],
    }


def schema_text() -> str:
    return json.dumps(project_schema(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"
