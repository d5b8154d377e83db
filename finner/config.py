"""Typed configuration: frozen dataclasses with runnable defaults, mapped onto argparse.

Every stage declares one frozen dataclass; jobs expose its fields as `--kebab-case` flags
(`add_config_args`) and rebuild it from the parsed namespace (`config_from_args`), so a flag's
name, type, default and help text live in exactly one place: the dataclass field.
Unknown keys are rejected (`config_from_dict`), so a typo fails at start-up, not hours later.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from typing import Any, TypeVar

from finner.errors import FinnerError

C = TypeVar("C")

DEFAULT_STORE = "./finner-data"
STORE_ENV = "FINNER_STORE"


def default_store() -> str:
    """The store root: `$FINNER_STORE` when set (a cluster points it at `s3://...`), else ./finner-data."""
    return os.environ.get(STORE_ENV, DEFAULT_STORE)


class ConfigError(FinnerError, ValueError):
    """A config value out of range: names the flag the user typed, so every job reports it as
    `error: --flag-name: what is wrong`."""

    def __init__(self, field_name: str, message: str) -> None:
        self.flag = "--" + field_name.replace("_", "-")
        super().__init__(f"{self.flag}: {message}")


BOUNDS = ("at_least", "more_than", "at_most", "below")


def help_text(text: str, **bounds: float) -> dict[str, Any]:
    """Field metadata: the flag's help text and, for a number, its allowed range
    (`at_least`, `more_than`, `at_most`, `below`), checked by `Config`:
    `field(default=4, metadata=help_text("rows per batch", at_least=1))`."""
    unknown = set(bounds) - set(BOUNDS)
    if unknown:
        raise TypeError(f"help_text: unknown bound(s) {sorted(unknown)}; expected {BOUNDS}")
    return {"help": text, **bounds}


def _out_of_bounds(value: float, metadata: Any) -> str | None:
    checks = (("at_least", lambda b: value >= b, "at least"), ("more_than", lambda b: value > b, "more than"),
              ("at_most", lambda b: value <= b, "at most"), ("below", lambda b: value < b, "below"))
    failed = [f"{words} {metadata[key]:g}" for key, ok, words in checks if key in metadata and not ok(metadata[key])]
    return " and ".join(failed) or None


def check_config(config: Any) -> None:
    """Every number within its field's declared bounds and every Literal value one of its choices
    (items of a tuple field one by one),
    else a `ConfigError` naming the flag: configs built from flags, dicts or code all pass here."""
    hints = typing.get_type_hints(type(config))
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value is None or isinstance(value, bool):
            continue
        tp = _item_type(_unwrap_optional(hints[field.name]))
        for item in value if isinstance(value, tuple) else (value,):
            if typing.get_origin(tp) is typing.Literal and item not in typing.get_args(tp):
                raise ConfigError(field.name, f"expected one of {list(typing.get_args(tp))}, got {item!r}")
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                wrong = _out_of_bounds(item, field.metadata)
                if wrong:
                    raise ConfigError(field.name, f"must be {wrong}, got {item:g}")


class Config:
    """Base of every stage's frozen config dataclass: checks declared bounds and choices on
    construction. A subclass with more rules calls `super().__post_init__()` first."""

    def __post_init__(self) -> None:
        check_config(self)


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` -> `X`: an optional flag is typed as its value."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _item_type(tp: Any) -> Any:
    """`tuple[X, ...]` -> `X`: a repeated flag's values are typed and checked one by one."""
    if typing.get_origin(tp) in (tuple, list):
        (tp,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
    return tp


def add_config_args(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one `--flag` per field of dataclass `cls` (bools become `--flag/--no-flag`).

    Use with `argparse.ArgumentDefaultsHelpFormatter` (as `finner.pipeline.cli.parser` does) to show defaults.
    """
    hints = typing.get_type_hints(cls)
    group = parser.add_argument_group(cls.__name__)
    for field in dataclasses.fields(cls):
        if not field.init or field.metadata.get("cli") is False:
            continue
        tp = _unwrap_optional(hints[field.name])
        flag = "--" + (prefix + field.name).replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()  # type: ignore[misc]
        doc = field.metadata.get("help", "").replace("%", "%%")  # argparse expands %-formats in help
        kwargs: dict[str, Any] = {"dest": prefix + field.name, "default": default}
        if tp is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=doc, **kwargs)
            continue
        if typing.get_origin(tp) in (tuple, list):
            kwargs["nargs"] = "*"
        tp = _item_type(tp)
        if tp in (int, float, str):
            kwargs["type"] = tp
        elif typing.get_origin(tp) is typing.Literal:
            kwargs.update(choices=typing.get_args(tp), type=str)
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: unsupported config type {tp!r}")
        group.add_argument(flag, help=doc, **kwargs)


def config_from_args(cls: type[C], namespace: argparse.Namespace, prefix: str = "") -> C:
    """Rebuild the dataclass from the flags `add_config_args` added."""
    values = {}
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        if field.init and hasattr(namespace, prefix + field.name):
            value = getattr(namespace, prefix + field.name)
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def config_from_dict(cls: type[C], values: dict[str, Any]) -> C:
    """Build a config from a plain dict (YAML, JSON, Ray actor kwargs), rejecting unknown keys; a
    list (JSON's form of a tuple field) becomes a tuple, as `config_from_args` makes it."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(unknown[0], f"{cls.__name__} has no such setting; expected some of {sorted(names)}")
    return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})

