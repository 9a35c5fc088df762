"""Declaring command options as dataclasses, without importing argparse.

A command's options are a frozen dataclass with a docstring under every field; the CLI
(`implicit_em.cli.options`) turns each field into a flag and the docstring into its help.
`flag` adds what a type annotation cannot say (positional, a different flag name, ...).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from typing import Any


def flag(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **cli: Any):
    """A dataclass field with command-line metadata.

    cli keys: positional (bool), name (the flag, e.g. "--set"), metavar, nargs ("+" or "*"),
    append (bool: a list[T] field given once per value, `--set a --set b`),
    config_flags (bool: on a list[str] field of `section.field=value` strings, add one flag per
    run-config field, `--model.hidden-dim 32`, each appending to this list).
    """
    kw: dict[str, Any] = {"metadata": {"cli": cli}}
    if factory is not dataclasses.MISSING:
        kw["default_factory"] = factory
    elif default is not dataclasses.MISSING:
        kw["default"] = default
    return dataclasses.field(**kw)


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (base classes included)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        body = ast.parse(source).body[0].body
        for node, nxt in zip(body, body[1:], strict=False):
            if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)):  # fmt: skip
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


@dataclasses.dataclass(frozen=True)
class ThreadsOption:
    """The `--threads` flag every command that computes on the CPU shares (a mixin: a field
    only, keyword-only so that it can follow any field; the command's `__post_init__` calls
    `check_threads` and its run calls `set_threads`)."""

    threads: int | None = dataclasses.field(default=None, kw_only=True)
    """torch CPU threads (default: torch's)"""


def check_threads(threads: int | None) -> None:
    """Refuse a thread count below 1 (ValueError naming --threads)."""
    if threads is not None and threads < 1:
        raise ValueError(
            f"--threads must be >= 1, got {threads}: pass a positive count or leave it out"
        )


def set_threads(threads: int | None) -> None:
    """torch.set_num_threads(threads); None leaves torch's default."""
    if threads:
        import torch

        torch.set_num_threads(threads)
