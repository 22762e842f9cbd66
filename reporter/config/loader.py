"""YAML in, plain Python out, with the line and column of every key and value remembered.

PyPyYAML's SafeLoader composes the node tree; we build the values ourselves so that
each one is tied to its position, only the core YAML tags are accepted, duplicate
keys are errors, and `${ENV_VAR}` references are resolved where they stand.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import Issue

Path_ = tuple  # key path inside a document: ("tiers", "strategic", "kpis", "nps", "weight")

CORE_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class MarkingLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text: configs hold periods and times as strings."""


# Drop the implicit timestamp resolver so "2026-10-01" stays a string, as users expect.
MarkingLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class Document:
    """One parsed YAML file: its data and where each key path sits."""

    file: str
    data: object
    marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)       # value positions
    key_marks: dict[Path_, tuple[int, int]] = field(default_factory=dict)   # key positions

    def locate(self, path: Path_, key: bool = False) -> tuple[int | None, int | None]:
        """Position of the deepest existing prefix of path (a missing key points at its parent)."""
        table = self.key_marks if key else self.marks
        for end in range(len(path), -1, -1):
            prefix = tuple(path[:end])
            if prefix in table:
                return table[prefix]
            if prefix in self.marks:
                return self.marks[prefix]
        return None, None

    def issue(self, path: Path_, message: str, key: bool = False) -> Issue:
        line, col = self.locate(path, key)
        return Issue(message, self.file, line, col, dotted(path))


def dotted(path: Path_) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path).replace(".[", "[")


def _pos(mark) -> tuple[int, int]:
    return mark.line + 1, mark.column + 1


def parse_yaml(text: str, file: str, environ=os.environ) -> tuple[Document, list[Issue]]:
    """Parse one YAML document; return it with every problem found (never raises on bad input)."""
    doc = Document(file, None)
    try:
        loader = MarkingLoader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _pos(mark) if mark else (None, None)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        return doc, [Issue(f"invalid YAML: {problem}", file, line, col)]
    except yaml.YAMLError as exc:
        return doc, [Issue(f"invalid YAML: {exc}", file)]
    issues: list[Issue] = []
    if node is None:
        doc.data = {}
        return doc, issues
    builder = _Builder(doc, issues, environ, MarkingLoader(""))
    doc.data = builder.build(node, ())
    return doc, issues


@dataclass
class _Builder:
    doc: Document
    issues: list[Issue]
    environ: object
    loader: MarkingLoader

    def build(self, node, path: Path_):
        self.doc.marks[path] = _pos(node.start_mark)
        if node.tag not in CORE_TAGS:
            self._fail(node, path, f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed; write plain values")
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        value = self.loader.construct_object(node)
        return self._env(value, node, path) if isinstance(value, str) else value

    def _mapping(self, node, path: Path_) -> dict:
        result: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self._fail(key_node, path, "YAML merge keys (<<) are not supported; repeat the values")
                continue
            key = self.build(key_node, (*path, "<key>"))
            if not isinstance(key, (str, int)):
                self._fail(key_node, path, "keys must be plain text")
                continue
            key = str(key)
            if key in result:
                self._fail(key_node, (*path, key), f'duplicate key "{key}": each key may appear once')
                continue
            self.doc.key_marks[(*path, key)] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, (*path, key))
        self.doc.marks.pop((*path, "<key>"), None)
        return result

    def _env(self, text: str, node, path: Path_) -> str:
        def substitute(match: re.Match) -> str:
            name, default = match.group(1), match.group(2)
            value = self.environ.get(name)
            if value is None:
                if default is not None:
                    return default
                self._fail(node, path, f"environment variable {name} is not set; export it or write ${{{name}:-default}}")
                return ""
            return value

        return ENV_REF.sub(substitute, text)

    def _fail(self, node, path: Path_, message: str) -> None:
        line, col = _pos(node.start_mark)
        self.issues.append(Issue(message, self.doc.file, line, col, dotted(path) or None))
