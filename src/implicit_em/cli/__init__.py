"""The `implicit-em` command line: the only module of the package that uses argparse.

Conventions, the same for every command:
- exit 0 on success; 2 when the invocation must change (a bad flag or value, an unknown config
  key, an output that exists without --overwrite); 1 when the command failed at run time
  (data that cannot be fetched, a crash); 130 on Ctrl-C;
- an error is one line on stderr, `implicit-em: error: <problem>: <fix>`; `--debug` (anywhere
  on the line) shows the traceback instead;
- nothing but argparse is imported before a command is chosen, so `--help` is instant.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import sys

from implicit_em.cli.commands import COMMANDS, GROUPS, Command

PROG = "implicit-em"
DESCRIPTION = "Decoder-free sparse autoencoders derived from implicit EM: reproduce the paper, train, evaluate."
USAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileExistsError, FileNotFoundError)
"""Exceptions that mean the invocation must change (exit 2): a bad value (ConfigError is a
ValueError), an output that exists, an input path that does not."""

__all__ = ["COMMANDS", "Command", "exit_status", "main", "parser_for", "resolve"]


def exit_status(result: object) -> int:
    """A command's return value as an exit status: an int is the status and None is 0; any
    other result means success and is shown on one line (a path: where the output went; a
    dict: its scalar entries as JSON), so library `run` functions that return what they wrote
    can be commands as they are."""
    if result is None or isinstance(result, bool | int):
        return int(result or 0)
    if isinstance(result, dict):
        import json

        shown = {k: v for k, v in result.items() if isinstance(v, str | int | float | bool)}
        if shown:
            print(json.dumps(shown))
    else:
        print(result)
    return 0


def resolve(target: str):
    """The attribute a "module:attribute" string names (imported on demand)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _overview(prefix: str = "") -> argparse.ArgumentParser:
    """A parser listing the commands under `prefix` (none imported)."""
    depth = len(prefix.split()) if prefix else 0
    p = argparse.ArgumentParser(
        prog=f"{PROG} {prefix}".strip(),
        description=DESCRIPTION if not prefix else GROUPS.get(prefix),
        epilog="Run `implicit-em COMMAND --help` for a command's flags; add --debug to any "
        "command for a traceback instead of the one-line error.",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    seen = set()
    for c in COMMANDS:
        words = c.name.split()
        if prefix and words[:depth] != prefix.split():
            continue
        word = words[depth]
        if word in seen:
            continue
        seen.add(word)
        group = " ".join(words[: depth + 1])
        sub.add_parser(word, help=c.help if len(words) == depth + 1 else GROUPS.get(group, ""))
    return p


def parser_for(command: Command) -> argparse.ArgumentParser:
    """The full parser of one command (imports its options dataclass)."""
    from implicit_em.cli.options import add_options

    cls = resolve(command.options)
    doc = inspect.cleandoc(cls.__doc__ or "")
    p = argparse.ArgumentParser(
        prog=f"{PROG} {command.name}",
        description=command.help + (f"\n\n{doc}" if doc and not doc.startswith(cls.__name__ + "(") else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_options(p, cls)
    return p


def _find(argv: list[str]) -> tuple[Command | None, int]:
    best, n = None, 0
    for c in COMMANDS:
        words = c.name.split()
        if argv[: len(words)] == words and len(words) > n:
            best, n = c, len(words)
    return best, n


def main(argv: list[str] | None = None) -> int:
    """Entry point of `implicit-em`; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--") if "--" in argv else len(argv)]
    if debug:
        argv.remove("--debug")
    command, n = _find(argv)
    if command is None:
        prefix = " ".join(w for w in argv[:1] if w in GROUPS)
        words = [w for w in argv if not w.startswith("-")]
        p = _overview(prefix)
        if words and words[0] not in GROUPS or (prefix and len(words) > 1):
            names = sorted({c.name for c in COMMANDS} | set(GROUPS))
            bad = " ".join(words[: 2 if prefix else 1])
            close = difflib.get_close_matches(bad, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(names)}"
            print(f"{PROG}: error: unknown command {bad!r}: {hint}", file=sys.stderr)
            return 2
        try:
            p.parse_args(argv[1:] if prefix else argv)  # prints help (0) or usage (2)
        except SystemExit as e:
            return int(e.code or 0)
        return 2
    try:
        cls = resolve(command.options)
        parser = parser_for(command)
        try:
            ns = parser.parse_args(argv[n:])
        except SystemExit as e:  # --help (0) or a usage error argparse already printed (2)
            return int(e.code or 0)
        from implicit_em.cli.options import build_options

        opts = build_options(cls, ns)
        return exit_status(resolve(command.run)(opts))  # the command's heavy imports start here
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  (the one place that turns errors into exit codes)
        if debug:
            raise
        msg = " ".join(str(e).split()) or type(e).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 2 if isinstance(e, USAGE_ERRORS) else 1
