"""Command-line flags generated from a settings model, so a setting is declared only once.

Every field of a pydantic model becomes one flag: ``--duration-s`` for ``duration_s``, typed by the
field (an enum or a ``Literal`` gives choices, a ``bool`` a switch, a pair ``A,B``, a list
comma-separated values), its help the field's description plus its default. A nested model (the
``power`` table) gives one flag per field of its own. The field's :class:`shared.run_settings.Flag`
marker, if any, names the ``--help`` heading it goes under and may rename the flag.

Flags default to ``None`` (not given), so that the environment and the config file show through;
:func:`given` turns the parsed namespace back into the nested mapping a settings model takes.

Use::

    groups = add_settings_flags(parser, RunSettings)
    args = parser.parse_args()
    settings = RunSettings(**given(args, RunSettings))

``bench``, ``sweep`` and ``fleet run`` build their flags this way from
:class:`shared.run_settings.RunSettings` (the agent adds its own local fields the same way).
"""

from __future__ import annotations

import argparse
import enum
import types
import typing
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from shared.errors import ConfigError
from shared.run_settings import Flag

__all__ = ["FlagSpec", "add_settings_flags", "flag_help", "flag_specs", "given", "only",
           "settings_from_args"]

SEP = "__"
"""Joins the names of a nested field in its argparse ``dest`` (``power__source``)."""


@dataclass(frozen=True)
class FlagSpec:
    """One generated flag: the field it sets (``path``), its name, heading and help."""

    path: tuple[str, ...]
    field: FieldInfo
    option: str
    group: str

    @property
    def dest(self) -> str:
        return SEP.join(self.path)


def _unwrap_optional(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _marker(field: FieldInfo) -> Flag | None:
    return next((m for m in field.metadata if isinstance(m, Flag)), None)


def flag_specs(model: type[BaseModel], *, skip: Collection[str] = (),
               prefix: tuple[str, ...] = (), _group: str = "settings") -> Iterator[FlagSpec]:
    """Every flag ``model`` gives, in field order; nested models give their fields' flags.

    ``prefix``: where ``model`` sits inside the settings (``("backends", "litert")``). Fields with
    no description (internal ones) and the dotted names in ``skip`` give none.
    """
    for name, field in model.model_fields.items():
        path = (*prefix, name)
        dotted = ".".join(path)
        if dotted in skip or field.description is None:
            continue
        annotation = _unwrap_optional(field.annotation)
        marker = _marker(field)
        group = marker.group if marker else _group
        if _is_model(annotation):
            yield from flag_specs(annotation, skip=skip, prefix=path, _group=name)
            continue
        option = "--" + (marker.name if marker and marker.name else "-".join(path).replace("_", "-"))
        yield FlagSpec(path, field, option, group)


def _render(value: Any) -> str:
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return ",".join(_render(v) for v in value)
    return str(value)


def flag_help(field: FieldInfo, default: Any = None) -> str:
    """The field's description, then its default (``default`` overrides the model's); a default
    computed where it runs (the hostname) is for the description to explain."""
    value = default if default is not None else (
        None if field.default_factory is not None else field.get_default())
    text = field.description or ""
    if value is None or value is False or isinstance(value, BaseModel):
        return text
    return f"{text} (default: {_render(value)})"


def _list_of(kind: Callable[[str], Any], what: str) -> Callable[[str], list[Any]]:
    def parse(text: str) -> list[Any]:
        try:
            values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        except (ValueError, argparse.ArgumentTypeError) as err:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}") from err
        if not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}")
        return values

    return parse


def _pair(kinds: tuple[Any, ...]) -> Callable[[str], tuple[Any, ...]]:
    def parse(text: str) -> tuple[Any, ...]:
        parts = text.split(",")
        try:
            if len(parts) != len(kinds):
                raise ValueError(text)
            return tuple(k(p.strip()) for k, p in zip(kinds, parts, strict=True))
        except ValueError as err:
            raise argparse.ArgumentTypeError(
                f"expected {len(kinds)} comma-separated values, for example 0,255") from err

    return parse


def _argument(annotation: Any) -> dict[str, Any]:
    """argparse keywords (type, choices, action) for a field's (non-optional) type."""
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return {"action": "store_true"}
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"choices": [m.value for m in annotation]}
    if origin is Literal:
        return {"choices": [str(a) for a in typing.get_args(annotation)]}
    if origin is tuple:
        return {"type": _pair(typing.get_args(annotation))}
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return {"type": _list_of(inner, getattr(inner, "__name__", "values"))}
    if annotation in (int, float, str, Path):
        return {"type": annotation}
    raise TypeError(f"no flag type for {annotation!r}")


def add_settings_flags(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    *,
    skip: Collection[str] = (),
    lists: Collection[str] = (),
    defaults: Mapping[str, Any] | None = None,
    groups: dict[str, Any] | None = None,
    prefix: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Add one flag per field of ``model`` to ``parser``; returns the ``--help`` groups by name.

    ``prefix``: where ``model`` sits in the settings (see :func:`flag_specs`). ``lists``: dotted
    field names whose flag takes a comma-separated list of values (``sweep``'s
    axes); ``defaults``: dotted field names whose flag has a default of its own (shown in the help,
    and winning over the environment and the file, as any flag does); ``groups``: the groups
    already made, to add to.
    """
    groups = {} if groups is None else groups
    defaults = defaults or {}
    for spec in flag_specs(model, skip=skip, prefix=prefix):
        dotted = ".".join(spec.path)
        group = groups.get(spec.group)
        if group is None:
            group = groups[spec.group] = parser.add_argument_group(spec.group)
        annotation = _unwrap_optional(spec.field.annotation)
        kwargs = _argument(annotation)
        default = defaults.get(dotted)
        help_text = flag_help(spec.field, default)
        if dotted in lists:
            inner = kwargs.pop("type", str)
            kwargs.pop("choices", None)
            kwargs["type"] = _list_of(inner, getattr(inner, "__name__", "values"))
            if default is None:
                default = [spec.field.get_default(call_default_factory=True)]
            help_text = (f"{spec.field.description}; a comma-separated list, one run each "
                         f"(default: {_render(default)})")
        if kwargs.get("action") != "store_true":
            kwargs["metavar"] = _metavar(spec, kwargs)
        group.add_argument(spec.option, dest=spec.dest, default=default, help=help_text, **kwargs)
    return groups


def _metavar(spec: FlagSpec, kwargs: Mapping[str, Any]) -> str | None:
    marker = _marker(spec.field)
    if marker is not None and marker.metavar:
        return marker.metavar
    if "choices" in kwargs:
        return None  # argparse shows {a,b,c}
    return spec.option.removeprefix("--").replace("-", "_").upper()


def given(args: argparse.Namespace, model: type[BaseModel], *, skip: Collection[str] = (),
          prefix: tuple[str, ...] = (), into: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values of ``model``'s flags that were given (not ``None``), as a nested mapping
    (added to ``into`` when given)."""
    out: dict[str, Any] = {} if into is None else into
    for spec in flag_specs(model, skip=skip, prefix=prefix):
        value = getattr(args, spec.dest, None)
        if value is None:
            continue
        target = out
        for key in spec.path[:-1]:
            target = target.setdefault(key, {})
        target[spec.path[-1]] = value
    return out


def only(model: type[BaseModel], keep: Collection[str]) -> frozenset[str]:
    """The ``skip`` that leaves ``model`` only the flags of the dotted names in ``keep`` (a
    command that takes a few of the run settings, such as ``fleet monitor``'s runtime ones)."""
    return frozenset(".".join(spec.path) for spec in flag_specs(model)) - set(keep)


M = typing.TypeVar("M", bound=BaseModel)


def settings_from_args(args: argparse.Namespace, model: type[M], *,
                       skip: Collection[str] = ()) -> M:
    """``model`` from the flags given (but those in ``skip``); a one-line ConfigError naming the
    flag whose value it refuses."""
    try:
        return model(**given(args, model, skip=skip))
    except ValidationError as err:
        first = err.errors()[0]
        options = {spec.path: spec.option for spec in flag_specs(model)}
        flag = options.get(tuple(str(p) for p in first["loc"]), "settings")
        raise ConfigError(f"{flag}: {first['msg']}") from err
