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

from finner.ids import stable_hash

C = TypeVar("C")

DEFAULT_STORE = "./finner-data"
STORE_ENV = "FINNER_STORE"


def default_store() -> str:
    """The store root: `$FINNER_STORE` when set (a cluster points it at `s3://...`), else ./finner-data."""
    return os.environ.get(STORE_ENV, DEFAULT_STORE)


def help_text(text: str) -> dict[str, str]:
    """Field metadata carrying the flag's help text: `field(default=..., metadata=help_text("..."))`."""
    return {"help": text}


def _unwrap_optional(tp: Any) -> Any:
    """`X | None` -> `X`: an optional flag is typed as its value."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
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
            (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
            kwargs.update(nargs="*", type=item)
        elif tp in (int, float, str):
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
    """Build a config from a plain dict (YAML, JSON, Ray actor kwargs), rejecting unknown keys."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    return cls(**values)


def fingerprint(config: Any, fields: typing.Iterable[str]) -> str:
    """Hash of the fields that change a stage's output (model, prompt...), never of throughput knobs."""
    return stable_hash({name: getattr(config, name) for name in fields}, length=12)
