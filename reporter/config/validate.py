"""Pydantic's errors, told the way a person fixes them: where, what was expected, what was found."""
from __future__ import annotations

import typing
from types import UnionType

from pydantic import BaseModel, ValidationError

from ..errors import Issue, did_you_mean
from .loader import Document


def model_issues(doc: Document, model: type[BaseModel], exc: ValidationError) -> list[Issue]:
    issues = []
    for err in exc.errors(include_url=False):
        path = _data_path(doc.data, err["loc"], keep_last=err["type"] in ("missing", "extra_forbidden"))
        if err["type"] == "union_tag_invalid":
            path = (*path, err["ctx"]["discriminator"].strip("'"))
        issues.append(doc.issue(path, _message(err, model, err["loc"]), key=err["type"] == "extra_forbidden"))
    return sorted(set(issues), key=lambda i: (i.line or 0, i.col or 0, i.message))


def _data_path(data, loc, keep_last: bool) -> tuple:
    """Pydantic's loc as a path into the data: union tags it inserts are not keys, so they are skipped."""
    path, node = [], data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
            path.append(part)
        elif keep_last and i == len(loc) - 1:
            path.append(part)  # a missing key: Document.locate falls back to its parent
    return tuple(path)


def _message(err: dict, model: type[BaseModel], loc) -> str:
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    got = f", got {_show(value)}"
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        hint = did_you_mean(loc[-1], allowed) if allowed else ""
        listing = f" (allowed: {', '.join(allowed)})" if allowed and not hint else ""
        return f'unknown key "{loc[-1]}"{hint}{listing}'
    if kind in ("literal_error", "union_tag_invalid"):
        expected = ctx.get("expected") or ctx.get("expected_tags", "")
        options = [o.strip().strip("'") for o in str(expected).replace(" or ", ",").split(",") if o.strip()]
        shown = value if kind == "literal_error" else ctx.get("tag")
        return f"expected one of {', '.join(options)}, got {_show(shown)}{did_you_mean(shown, options)}"
    if kind == "union_tag_not_found":
        return f'missing "{ctx.get("discriminator", "kind").strip(chr(39))}": say which kind of source this is'
    if kind in ("float_parsing", "float_type", "int_parsing", "int_type", "int_from_float"):
        noun = "a whole number" if kind.startswith("int") else "a number"
        return f"expected {noun}{_bounds(model, loc)}{got}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return f"expected a number{_bounds(model, loc)}{got}"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false{got}"
    if kind == "string_type":
        return f"expected text{got}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping of keys to values{got}"
    if kind == "list_type":
        return f"expected a list{got}"
    if kind in ("string_too_short", "string_too_long"):
        return f"{err['msg'].lower()}{got}"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return f"{err['msg']}{got}"


def _show(value) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return "nothing" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


# ---------------------------------------------------------------- walking the models along a loc

def _field_at(model: type[BaseModel], loc):
    """The pydantic FieldInfo for loc (None when the loc runs through dicts of free keys)."""
    annotation, info = model, None
    for part in loc:
        annotation, info = _step(annotation, part)
        if annotation is None:
            return None
    return info


def _allowed_keys(model: type[BaseModel], loc) -> list[str]:
    annotation = model
    for part in loc:
        annotation, _ = _step(annotation, part)
        if annotation is None:
            return []
    models = [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]
    return sorted({f.alias or name for m in models for name, f in m.model_fields.items()})


def _step(annotation, part):
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            fields = {f.alias or n: f for n, f in member.model_fields.items()}
            if part in fields:
                return fields[part].annotation, fields[part]
            tag = member.model_fields.get("kind")
            if tag is not None and part in typing.get_args(tag.annotation):
                return member, None
        origin = typing.get_origin(member)
        if origin in (dict, list):
            return typing.get_args(member)[-1], None
    return None, None


def _members(annotation) -> list:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _members(typing.get_args(annotation)[0])
    if origin in (typing.Union, UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _bounds(model, loc) -> str:
    info = _field_at(model, loc)
    if info is None:
        return ""
    words = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    found = []
    for meta in info.metadata:
        for attr, sign in words.items():
            if getattr(meta, attr, None) is not None:
                found.append(f"{sign} {getattr(meta, attr)}")
    # Annotated aliases (NonNegative) keep their bounds inside the annotation itself
    for arg in typing.get_args(info.annotation)[1:] if typing.get_origin(info.annotation) is typing.Annotated else ():
        for meta in getattr(arg, "metadata", []):
            for attr, sign in words.items():
                if getattr(meta, attr, None) is not None:
                    found.append(f"{sign} {getattr(meta, attr)}")
    return " " + " and ".join(found) if found else ""
