"""Flags from dataclasses: one small generator over `dataclasses.fields` (issue 14).

Every command is an options dataclass plus a function `run(opts)`. Each field becomes one flag:
`--field-name`, typed from its annotation, its help the docstring written under the field, its
default the field's default. A field's metadata key "cli" (see `implicit_em.options.flag`) may make it positional,
rename the flag, or ask for the run-config flags (`config_flags`).

Annotations understood: str, int, float, Path, bool (store_true when the default is False,
--x/--no-x when it is True), `T | None`, `Literal[...]` (choices), `list[T]` / `tuple[T, ...]`
(one or more values) and `tuple[T1, T2, ...]` (exactly that many values, each of its type).
Anything else is a programming error, raised when the command's parser is built.

An options check may raise an error whose `named` text names each field in backticks
(`` `hidden_dim` ``, `` `overwrite=True` ``; `eval.options.option_error`; its plain message,
for library callers, names the field without them); `as_flags` shows each such name as the
flag the user typed (`--hidden-dim`, `--overwrite`), so the field -> flag mapping is this
module's alone (`flag_names`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

from implicit_em.options import field_docs

# sections of a run config, in the order their flags are listed
_SECTIONS = ("model", "loss", "data", "training")


def _unwrap_optional(typ: Any) -> tuple[Any, bool]:
    args = typing.get_args(typ)
    if typing.get_origin(typ) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return typ, False


def _scalar(typ: Any, where: str) -> dict:
    if typing.get_origin(typ) is Literal:
        choices = typing.get_args(typ)
        return {"type": type(choices[0]), "choices": choices}
    if typ in (str, int, float, Path):
        return {"type": typ}
    raise TypeError(f"{where}: unsupported option type {typ!r}")


def _help(doc: str, default: Any) -> str:
    doc = doc.replace("%", "%%")
    if default in (None, False, dataclasses.MISSING) or default == [] or default == ():
        return doc
    shown = " ".join(map(str, default)) if isinstance(default, list | tuple) else default
    return f"{doc} (default: {str(shown).replace('%', '%%')})"


class _Typed(argparse.Action):
    """A fixed-length tuple (`tuple[int, float]`): each value converted by the type at its
    position; a value that does not convert is argparse's usage error."""

    def __init__(self, *args, types: tuple, **kw) -> None:
        super().__init__(*args, **kw)
        self.types = types

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        out = []
        for typ, v in zip(self.types, values, strict=True):
            try:
                out.append(typ(v))
            except ValueError:
                parser.error(f"argument {option_string}: invalid {typ.__name__} value: {v!r}")
        setattr(namespace, self.dest, tuple(out))


class _AppendAssignment(argparse.Action):
    """`--section.field VALUE` -> appends "section.field=VALUE" to the list at dest."""

    def __init__(self, *args, key: str, **kw) -> None:
        super().__init__(*args, **kw)
        self.key = key

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        items = list(getattr(namespace, self.dest) or [])
        items.append(f"{self.key}={values}")
        setattr(namespace, self.dest, items)


def _config_flags(parser: argparse.ArgumentParser, dest: str, taken: set[str]) -> None:
    from implicit_em.config import SECTIONS

    group = parser.add_argument_group(
        "run-config fields",
        "Each sets one field of the run config, like --set SECTION.FIELD=VALUE (later wins); "
        "the short form is offered where the name is unambiguous.",
    )
    for section in _SECTIONS:
        cls = SECTIONS[section]
        docs = field_docs(cls)
        for f in dataclasses.fields(cls):
            long = f"--{section}.{f.name.replace('_', '-')}"
            short = f"--{f.name.replace('_', '-')}"
            names = [long] + ([short] if short not in taken else [])
            taken.update(names)
            group.add_argument(*names, dest=dest, action=_AppendAssignment,
                               key=f"{section}.{f.name}", metavar=f.name.upper(),
                               help=docs.get(f.name, "").replace("%", "%%"))  # fmt: skip


def _fixed(typ: Any) -> bool:
    """Whether a tuple annotation has a fixed length (`tuple[int, float]`, not `tuple[int, ...]`)."""
    args = typing.get_args(typ)
    return len(args) > 1 and Ellipsis not in args


def _flag(f: dataclasses.Field) -> str:
    """How the user types field f: its flag (`--hidden-dim`), or a positional's name as
    --help shows it."""
    cli = f.metadata.get("cli", {})
    if cli.get("positional"):
        return cli.get("metavar", f.name)
    return cli.get("name", "--" + f.name.replace("_", "-"))


def flag_names(cls: type) -> dict[str, str]:
    """field -> the flag the CLI gives it (`hidden_dim` -> `--hidden-dim`), for `cls`."""
    return {f.name: _flag(f) for f in dataclasses.fields(cls)}


_NAMED = re.compile(r"`([A-Za-z_]\w*)(?:=([^`]*))?`")  # as eval.options.OPTION_NAME


def as_flags(message: str, cls: type) -> str:
    """`message` with each backticked field of `cls` written as its flag: `hidden_dim` ->
    --hidden-dim, `lr=-1` -> --lr -1, `overwrite=True` -> --overwrite, `gradient_shares=False`
    -> --no-gradient-shares (a flag whose default is True), `history_mcc=False` -> no
    --history-mcc. Backticked names that are not fields of `cls` are left as they are."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)

    def flag(m: re.Match) -> str:
        name, value = m.group(1), m.group(2)
        if name not in fields:
            return m.group(0)
        f = fields[name]
        shown = _flag(f)
        if value is None:
            return shown
        if _unwrap_optional(hints[name])[0] is bool and value in ("True", "False"):
            if value == "True":
                return shown
            return "--no-" + shown[2:] if f.default is True else f"no {shown}"
        return f"{shown} {value}"

    return _NAMED.sub(flag, message)


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add one argument per field of the options dataclass `cls` to `parser`."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    taken = {"-h", "--help", "--debug"}
    deferred = []
    for f in dataclasses.fields(cls):
        cli = dict(f.metadata.get("cli", {}))
        where = f"{cls.__name__}.{f.name}"
        typ, _ = _unwrap_optional(hints[f.name])
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        kw: dict[str, Any] = {"help": _help(docs.get(f.name, ""), default)}
        if "metavar" in cli:
            kw["metavar"] = cli["metavar"]
        origin = typing.get_origin(typ)
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction if default is True else "store_true"
        elif origin is tuple and _fixed(typ):
            types_ = tuple(_scalar(t, where)["type"] for t in typing.get_args(typ))
            kw.update(nargs=len(types_), action=_Typed, types=types_)
        elif origin in (list, tuple):
            kw.update(_scalar(typing.get_args(typ)[0], where), nargs=cli.get("nargs", "+"))
            if cli.get("append"):
                kw.pop("nargs")
                kw["action"] = "append"
        else:
            kw.update(_scalar(typ, where))
        if cli.get("positional"):
            if default is not dataclasses.MISSING:
                kw["nargs"] = "?"
                kw["default"] = default
            parser.add_argument(f.name, **kw)
            continue
        name = _flag(f)
        taken.add(name)
        if default is dataclasses.MISSING:
            kw["required"] = True
        else:
            kw["default"] = list(default) if isinstance(default, tuple) else default
        parser.add_argument(name, dest=f.name, **kw)
        if cli.get("config_flags"):
            deferred.append(f.name)
    for dest in deferred:  # after the command's own flags, so that those keep their names
        _config_flags(parser, dest, taken)


def build_options(cls: type, namespace: argparse.Namespace) -> Any:
    """The options dataclass from parsed arguments (its __post_init__ checks run here)."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        v = getattr(namespace, f.name)
        typ, _ = _unwrap_optional(hints[f.name])
        if typing.get_origin(typ) is tuple and v is not None:
            v = tuple(v)
        values[f.name] = v
    return cls(**values)
