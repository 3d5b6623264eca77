"""One way to say a config: `--set a.b=v` and `--config file.yaml` on every job.

    cfg = apply_overrides(hidvae_beauty(), ["lr=1e-3", "hidden_dims=256,128"])
    cfg = apply_overrides(lamia_minilm_small(), ["gamma=0", "backbone.frozen_layers=3"])
    cfg = apply_overrides(cfg, read_config_file("best.yaml"), source="best.yaml")

A key names a field of a dataclass config; dots walk into nested dataclass
fields (`backbone.lr`). A value given as text (`--set`) is parsed as the type
the field declares (`int`, `float`, `bool`, `str`, `tuple[int, ...]` written
`256,128`, `X | None` written `none`); a value from YAML keeps its YAML type
and is checked against the field the same way. The keys are the ones
`tune_spaces/*.yaml` sweep, so a sweep's best trial and a job's flags speak the
same language. Every error names where the value came from (the flag or the
file) and the field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

__all__ = [
    "OverrideError",
    "apply_overrides",
    "describe_config",
    "field_docs",
    "parse_assignments",
    "read_config_file",
]


class OverrideError(ValueError):
    """A bad key or value in `--set` / `--config`; the message names source and field."""


def parse_assignments(items: list[str], source: str = "--set") -> dict[str, str]:
    """`["lr=1e-3", "backbone.lr=2e-4"]` → `{"lr": "1e-3", "backbone.lr": "2e-4"}`
    (a later repeat of a key wins, as on any command line)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise OverrideError(f"{source} {item!r}: expected KEY=VALUE")
        out[key.strip()] = text.strip()
    return out


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping, nested sections flattened to dotted keys:
    `{backbone: {lr: 2e-4}}` → `{"backbone.lr": 2e-4}`."""
    import yaml

    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise OverrideError(f"--config {path}: cannot read it ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise OverrideError(f"--config {path}: not valid YAML ({err})") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise OverrideError(f"--config {path}: expected a mapping of field: value at the top")
    return _flatten(document)


def apply_overrides(
    cfg: Any, values: dict[str, Any] | list[str], source: str = "--set", _prefix: str = ""
) -> Any:
    """A copy of the dataclass `cfg` with `values` applied (see the module docstring).

    `values` is a list of `KEY=VALUE` strings or a mapping of dotted keys to
    text or YAML values; `source` names them in errors (`--set`, a file path).
    """
    if isinstance(values, list):
        values = parse_assignments(values, source)
    if not values:
        return cfg
    nested: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    hints = _field_types(cfg)
    for key, value in values.items():
        head, _, rest = key.partition(".")
        if head not in hints:
            raise OverrideError(
                f"{source} {_prefix}{key}: no field {head!r}; fields are {sorted(hints)}"
            )
        if rest:
            if not dataclasses.is_dataclass(getattr(cfg, head)):
                raise OverrideError(f"{source} {_prefix}{key}: {head!r} has no sub-fields")
            nested.setdefault(head, {})[rest] = value
        elif dataclasses.is_dataclass(getattr(cfg, head)):
            raise OverrideError(
                f"{source} {_prefix}{key}: a section; set its fields as {_prefix}{head}.FIELD"
            )
        else:
            where = f"{source} {_prefix}{key}"
            changes[head] = _coerce(value, hints[head], getattr(cfg, head), where)
    for head, inner in nested.items():
        changes[head] = apply_overrides(getattr(cfg, head), inner, source, f"{_prefix}{head}.")
    return dataclasses.replace(cfg, **changes)


def _flatten(document: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _field_types(cfg: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(cfg):
        raise TypeError(f"{type(cfg).__name__} is not a dataclass config")
    try:
        hints = typing.get_type_hints(type(cfg))
    except Exception:  # an annotation that cannot be resolved: fall back to the values
        hints = {}
    return {f.name: hints.get(f.name, type(getattr(cfg, f.name))) for f in dataclasses.fields(cfg)}


def _coerce(value: Any, hint: Any, current: Any, where: str) -> Any:
    """`value` (text from --set, or a YAML scalar/list) as the field's declared type."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if _is_none(value) and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        hint = options[0] if len(options) == 1 else type(current)
        args = typing.get_args(hint)
    if _is_none(value) and not (hint is str and value is not None):  # a str may say "none"
        raise OverrideError(f"{where}: this field cannot be none")
    if typing.get_origin(hint) is typing.Literal:
        if value not in args:
            raise OverrideError(f"{where}={value!r}: expected one of {list(args)}")
        return value
    try:
        if typing.get_origin(hint) is tuple or hint is tuple:
            element = args[0] if args else int
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(
                _scalar(v.strip() if isinstance(v, str) else v, element) for v in items if v != ""
            )
        return _scalar(value, hint)
    except (TypeError, ValueError):
        name = getattr(hint, "__name__", str(hint))
        raise OverrideError(f"{where}={value!r}: not a valid {name}") from None


def _scalar(value: Any, kind: Any) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes"):
            return True
        if str(value).lower() in ("false", "0", "no"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    if kind is str:
        if not isinstance(value, str | int | float):
            raise ValueError(value)
        return str(value)
    return value  # a type we do not parse (a Literal, a class): passed through as given


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.lower() in ("none", "null"))


def describe_config(
    cfg: Any, fields: list[str] | None = None, indent: str = "  ", prefix: str = ""
) -> str:
    """One line per field of the dataclass `cfg` for `--help`: `name = default`, then
    its meaning; a nested dataclass field is listed field by field (`backbone.lr`).

    The meaning is the field's comment in the class source (the comment lines
    above it and the one at its end), so a field documented where it is declared
    is documented in `--help` too; `fields` keeps only those names, in that order.
    """
    import textwrap

    docs = field_docs(type(cfg))
    names = fields if fields is not None else [f.name for f in dataclasses.fields(cfg)]
    lines = []
    for name in names:
        value = getattr(cfg, name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            lines.append(describe_config(value, indent=indent, prefix=f"{prefix}{name}."))
            continue
        lines.append(f"{indent}{prefix}{name} = {_show(value)}")
        if docs.get(name):
            lines += textwrap.wrap(
                docs[name], width=88, initial_indent=indent * 3, subsequent_indent=indent * 3
            )
    return "\n".join(lines)


def field_docs(cls: type) -> dict[str, str]:
    """{field: its comment} from the source of `cls` and its dataclass bases
    (the subclass wins); {} where the source cannot be read (a zipped install)."""
    import inspect
    import io
    import tokenize

    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass) or klass is object:
            continue
        try:
            source = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        names = {f.name for f in dataclasses.fields(klass)}
        pending: list[str] = []  # full-line comments waiting for the field below them
        line_comment: dict[int, str] = {}
        full_line: dict[int, str] = {}
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if tok.line.strip().startswith("#"):
                    full_line[tok.start[0]] = text
                else:
                    line_comment[tok.start[0]] = text
        for number, line in enumerate(source.splitlines(), start=1):
            stripped = line.strip()
            if number in full_line:
                pending.append(full_line[number])
                continue
            name = stripped.split(":", 1)[0].strip() if ":" in stripped else ""
            if name in names and not stripped.startswith(("def ", "@")):
                parts = [*pending, line_comment.get(number, "")]
                text = " ".join(p for p in parts if p)
                if text:
                    out[name] = text
            pending = []
    return out


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if value else "()"
    if value is None:
        return "none"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)
