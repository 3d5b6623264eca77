"""Search spaces: `tune_spaces/*.yaml`, loaded, checked, and turned into Ray Tune domains.

    space = load_space("tune_spaces/hidvae.yaml")
    space.param_space()   # {"unique_weight": tune.grid_search([...]), ...}
    space.stage           # the sidrec.tuning.stages.Stage its trials train

A space file (every key below is checked; anything else is an error that
names the file and the key):

    stage: hidvae                 # a key of sidrec.tuning.stages.STAGES
    metric: collision_rate        # reported every epoch; default: the stage's
    mode: min                     # min | max
    num_samples: 1                # grid repeats / random draws
    asha: {grace_period: 2, reduction_factor: 2}   # ASHA early stopping
    base: {epochs: 20, codebook_size: 64}          # fixed for every trial
    params:                       # what varies, one distribution each
      unique_weight: {grid: [0.0, 2.0]}
      unique_margin: {uniform: [0.5, 0.95]}

Distributions: grid / choice (a list of values), uniform / loguniform
([low, high], floats), randint ([low, high), ints). Every value a trial can
draw (each listed value, both ends of a range) is type-checked against the
stage's default for that key and run through the stage's own config
validation, so `unique_margin: {uniform: [0.5, 1.5]}` fails at load time,
not in trial 17.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sidrec.tuning.stages import Stage, stage_for

__all__ = [
    "DISTRIBUTIONS",
    "Param",
    "SearchSpace",
    "SpaceError",
    "load_space",
    "parse_assignments",
    "parse_values",
    "read_space_file",
]

_TOP_KEYS = {"stage", "metric", "mode", "num_samples", "asha", "base", "params", "description"}
_ASHA_KEYS = {"grace_period", "reduction_factor"}


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads `1e-3` (no dot) as a string; learning rates are written that way."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def _yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class SpaceError(ValueError):
    """A bad search space: names the file and the key at fault."""

    def __init__(self, file: str | Path, key: str | None, message: str):
        self.file, self.key, self.reason = str(file), key, message
        where = f"{file}: key '{key}'" if key else str(file)
        super().__init__(f"{where}: {message}")


def _tune():
    from ray import tune

    return tune


def _two_numbers(values: Any) -> bool:
    return (
        isinstance(values, list)
        and len(values) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    )


@dataclass(frozen=True)
class _Distribution:
    """How one distribution kind is checked, which points stand for it, and its Tune domain."""

    check: Callable[[Any], str | None]  # an error message, or None when well-formed
    points: Callable[[Any], list[Any]]  # values a trial can draw that must validate
    domain: Callable[[Any], Any]  # -> a ray.tune domain


def _check_list(values: Any) -> str | None:
    if not isinstance(values, list) or not values:
        return "expects a non-empty list of values"
    return None


def _check_range(values: Any) -> str | None:
    if not _two_numbers(values):
        return "expects [low, high], two numbers"
    if not values[0] < values[1]:
        return f"empty range: low {values[0]} must be < high {values[1]}"
    return None


def _check_log_range(values: Any) -> str | None:
    return _check_range(values) or (
        None if values[0] > 0 else f"log scale needs low > 0, got {values[0]}"
    )


def _check_int_range(values: Any) -> str | None:
    problem = _check_range(values)
    if problem is None and not all(isinstance(v, int) for v in values):
        return "expects [low, high) as integers"
    return problem


DISTRIBUTIONS: dict[str, _Distribution] = {
    "grid": _Distribution(_check_list, list, lambda v: _tune().grid_search(list(v))),
    "choice": _Distribution(_check_list, list, lambda v: _tune().choice(list(v))),
    "uniform": _Distribution(_check_range, list, lambda v: _tune().uniform(*v)),
    "loguniform": _Distribution(_check_log_range, list, lambda v: _tune().loguniform(*v)),
    # randint draws from [low, high): the last value a trial can get is high - 1.
    "randint": _Distribution(
        _check_int_range, lambda v: [v[0], v[1] - 1], lambda v: _tune().randint(*v)
    ),
}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # a key of DISTRIBUTIONS
    values: Any

    def domain(self) -> Any:
        return DISTRIBUTIONS[self.kind].domain(self.values)

    def grid_values(self) -> list[Any] | None:
        return list(self.values) if self.kind == "grid" else None


@dataclass(frozen=True)
class SearchSpace:
    path: Path
    stage_name: str
    metric: str
    mode: str
    params: dict[str, Param]
    base: dict[str, Any] = field(default_factory=dict)
    num_samples: int = 1
    grace_period: int = 1  # epochs every trial gets before ASHA may stop it
    reduction_factor: int = 2  # ASHA keeps the best 1/rf at each rung
    description: str = ""

    @property
    def stage(self) -> Stage:
        return stage_for(self.stage_name)

    def param_space(self) -> dict[str, Any]:
        """The Tuner's param_space: one Tune domain per swept key."""
        return {name: p.domain() for name, p in self.params.items()}

    def num_trials(self) -> int:
        """Trials the sweep runs: grid points x num_samples."""
        grid = 1
        for p in self.params.values():
            grid *= len(p.values) if p.kind == "grid" else 1
        return grid * self.num_samples

    def max_epochs(self) -> int:
        """ASHA's max_t: the stage's epoch count, as the base sets it or by default."""
        key = self.stage.epochs_key
        if key in self.params:
            p = self.params[key]
            points = DISTRIBUTIONS[p.kind].points(p.values)
            return int(max(points))
        return int(self.base.get(key, self.stage.defaults()[key]))

    def values(self, trial_params: Mapping[str, Any]) -> dict[str, Any]:
        """Base values with one trial's draws on top: what the trial trains."""
        return {**self.base, **dict(trial_params)}


def read_space_file(path: str | Path) -> dict[str, Any]:
    """The YAML mapping, its top-level keys and distributions well-formed (no stage checks).

    Enough to check a space whose stage has no trainable yet (stages.PENDING)."""
    path = Path(path)
    try:
        raw = _yaml(path.read_text())
    except FileNotFoundError:
        raise SpaceError(path, None, "no such file") from None
    except yaml.YAMLError as err:
        raise SpaceError(path, None, f"not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise SpaceError(path, None, "expected a mapping at the top level")
    unknown = sorted(set(raw) - _TOP_KEYS)
    if unknown:
        raise SpaceError(path, unknown[0], f"unknown key; known keys: {sorted(_TOP_KEYS)}")
    if "stage" not in raw:
        raise SpaceError(path, "stage", "missing: name the stage to tune")
    if raw.get("mode", "min") not in ("min", "max"):
        raise SpaceError(path, "mode", f"must be min or max, got {raw['mode']!r}")
    for key in ("num_samples",):
        if not _positive_int(raw.get(key, 1)):
            raise SpaceError(path, key, f"must be an integer >= 1, got {raw[key]!r}")
    asha = raw.get("asha") or {}
    if not isinstance(asha, dict):
        raise SpaceError(path, "asha", "expected a mapping")
    for key, value in asha.items():
        if key not in _ASHA_KEYS:
            raise SpaceError(path, f"asha.{key}", f"unknown key; known: {sorted(_ASHA_KEYS)}")
        if not _positive_int(value) or (key == "reduction_factor" and value < 2):
            raise SpaceError(
                path,
                f"asha.{key}",
                f"must be an integer >= 1 (>= 2 for reduction_factor), got {value!r}",
            )
    for section in ("base", "params"):
        if not isinstance(raw.get(section) or {}, dict):
            raise SpaceError(path, section, "expected a mapping")
    params = raw.get("params") or {}
    if not params:
        raise SpaceError(path, "params", "nothing to sweep: add at least one parameter")
    for name, spec in params.items():
        key = f"params.{name}"
        if not isinstance(spec, dict) or len(spec) != 1:
            raise SpaceError(
                path,
                key,
                f"expected one distribution, e.g. {{grid: [..]}}; kinds: {sorted(DISTRIBUTIONS)}",
            )
        ((kind, values),) = spec.items()
        if kind not in DISTRIBUTIONS:
            raise SpaceError(
                path, key, f"unknown distribution {kind!r}; kinds: {sorted(DISTRIBUTIONS)}"
            )
        problem = DISTRIBUTIONS[kind].check(values)
        if problem:
            raise SpaceError(path, key, f"{kind} {problem}")
    overlap = sorted(set(raw.get("base") or {}) & set(params))
    if overlap:
        raise SpaceError(path, f"base.{overlap[0]}", "is also in params: set it in one place")
    return raw


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _coerce(default: Any, value: Any, file: Path, key: str) -> Any:
    """`value` as the type of the key's default; a SpaceError naming the key if it is not one."""

    def bad() -> SpaceError:
        return SpaceError(file, key, f"{value!r} is not a {type(default).__name__}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad()
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) for v in value):
            raise bad()
        return tuple(value)
    if isinstance(default, float) or default is None:
        if value is None and default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad()
        return float(value) if isinstance(default, float) else value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if isinstance(default, str) and not isinstance(value, str):
        raise bad()
    return value


def _validated(stage: Stage, values: dict[str, Any], file: Path, key: str) -> None:
    try:
        stage.check(values)
    except (ValueError, TypeError, RuntimeError) as err:
        raise SpaceError(file, key, str(err)) from None


def load_space(path: str | Path) -> SearchSpace:
    """Read, check and build the search space in `path` (see the module docstring)."""
    path = Path(path)
    raw = read_space_file(path)
    name = raw["stage"]
    try:
        stage = stage_for(name)
    except KeyError as err:
        raise SpaceError(path, "stage", err.args[0]) from None
    defaults = stage.defaults()

    def known(key: str, section: str) -> None:
        if key not in defaults:
            raise SpaceError(
                path, f"{section}.{key}", f"not a {stage.name} key; known keys: {sorted(defaults)}"
            )

    base: dict[str, Any] = {}
    for key, value in (raw.get("base") or {}).items():
        known(key, "base")
        base[key] = _coerce(defaults[key], value, path, f"base.{key}")
    _validated(stage, base, path, "base")

    params: dict[str, Param] = {}
    for key, spec in raw["params"].items():
        known(key, "params")
        ((kind, values),) = spec.items()
        where = f"params.{key}"
        points = [
            _coerce(defaults[key], v, path, where) for v in DISTRIBUTIONS[kind].points(values)
        ]
        for point in points:
            _validated(stage, {**base, key: point}, path, where)
        if kind in ("grid", "choice"):
            values = points
        params[key] = Param(key, kind, values)

    metric = raw.get("metric", stage.default_metric)
    if not isinstance(metric, str) or not stage.metric_ok(metric):
        raise SpaceError(
            path,
            "metric",
            f"{metric!r} is not reported every epoch by {stage.name}; "
            f"use one matching {stage.metric_pattern}",
        )
    asha = raw.get("asha") or {}
    return SearchSpace(
        path=path,
        stage_name=name,
        metric=metric,
        mode=raw.get("mode", stage.default_mode),
        params=params,
        base=base,
        num_samples=raw.get("num_samples", 1),
        grace_period=asha.get("grace_period", 1),
        reduction_factor=asha.get("reduction_factor", 2),
        description=str(raw.get("description", "")),
    )


def parse_assignments(space: SearchSpace, assignments: list[str]) -> dict[str, Any]:
    """`["epochs=6", "hidden_dims=128,64"]` -> typed base overrides for `space`'s stage.

    Values are read as YAML scalars, then as the type of the key's default
    (a comma list for tuple fields), so errors name the key like a space file's."""
    defaults = space.stage.defaults()
    out: dict[str, Any] = {}
    for item in assignments:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in defaults:
            raise SpaceError(
                space.path,
                f"--set {item}",
                f"expected KEY=VALUE with KEY one of {sorted(defaults)}",
            )
        default = defaults[key]
        if isinstance(default, tuple):
            try:
                value: Any = [int(v) for v in text.split(",") if v.strip()]
            except ValueError:
                raise SpaceError(
                    space.path, f"--set {key}", f"{text!r} is not a list of ints"
                ) from None
        else:
            value = _yaml(text)
        out[key] = _coerce(default, value, space.path, f"--set {key}")
    return out


def parse_values(space: SearchSpace, values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """`{key: value}` read from a YAML file (`--config`, dotted keys for nested
    fields) -> typed base overrides for `space`'s stage, checked like a space's base."""
    defaults = space.stage.defaults()
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in defaults:
            raise SpaceError(
                space.path,
                f"{source} {key}",
                f"not a {space.stage.name} key; known keys: {sorted(defaults)}",
            )
        out[key] = _coerce(defaults[key], value, space.path, f"{source} {key}")
    _validated(space.stage, {**space.base, **out}, space.path, source)
    return out
