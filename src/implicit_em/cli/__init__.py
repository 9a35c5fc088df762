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
import errno
import importlib
import inspect
import signal
import sys

from implicit_em.cli.commands import COMMANDS, GROUPS, Command

PROG = "implicit-em"
DESCRIPTION = "Decoder-free sparse autoencoders derived from implicit EM: reproduce the paper, train, evaluate."
USAGE_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileExistsError, FileNotFoundError)
"""Exceptions that mean the invocation must change (exit 2): a bad value (ConfigError is a
ValueError), an output that exists, an input path that does not."""

PATH_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.ENOENT,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}
"""OSError numbers that name a path the user chose (exit 2); others (a full disk, I/O) exit 1."""
OS_FIXES = {
    errno.ENOSPC: "free disk space or choose an output directory on another disk",
    errno.EDQUOT: "free disk space (quota) or choose an output directory on another disk",
    errno.EACCES: "choose a path you can write to (or fix its permissions)",
    errno.EPERM: "choose a path you can write to (or fix its permissions)",
    errno.EROFS: "the file system is read-only: choose an output directory elsewhere",
    errno.ENOTDIR: "a part of the path is a file, not a directory: choose another path",
    errno.EISDIR: "the path is a directory where a file is expected: choose another path",
}
INTERRUPTED = ("files already finished are intact (every file is written atomically); run the same "
               "command again (train: add --resume) to continue")  # fmt: skip

__all__ = [
    "COMMANDS",
    "Command",
    "Terminated",
    "error_line",
    "exit_status",
    "main",
    "parser_for",
    "resolve",
]


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the problem and where to read the flags)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}: see `{self.prog} --help`", file=sys.stderr)
        raise SystemExit(2)


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM (exit 143)."""


def error_line(e: BaseException, command: Command | None = None) -> tuple[str, int]:
    """The one-line message and exit status for an exception that ended a command.

    With the command, an error that names options in its `named` text (`hidden_dim` in
    backticks; `eval.options.option_error`) shows each as the flag the user typed
    (--hidden-dim; `cli.options.as_flags`), and a bare rule gets the fix that fits the
    command (a YAML config and --set only where the command has them)."""
    if isinstance(e, OSError) and e.errno is not None and e.strerror:
        where = f" {e.filename}" if e.filename is not None else ""
        fix = OS_FIXES.get(e.errno, "check the path and try again")
        return f"cannot use{where}: {e.strerror}: {fix}", 2 if e.errno in PATH_ERRNOS else 1
    msg = " ".join(str(e).split()) or type(e).__name__
    cls = _options_class(command)
    named = getattr(e, "named", None)  # the message with its options in backticks
    if cls is not None and isinstance(named, str):
        from implicit_em.cli.options import as_flags

        msg = as_flags(" ".join(named.split()), cls)
    if isinstance(e, USAGE_ERRORS) and _raised_by_us(e):
        if ": " not in msg:  # a bare rule such as "training.epochs must be >= 1, got 0"
            msg += ": " + _change_that_value(command, cls)
        return msg, 2
    if type(e).__module__.startswith("implicit_em") or ": " in msg:
        return msg, 1  # our own errors say what to do
    return f"{type(e).__name__}: {msg}: unexpected failure; rerun with --debug for the traceback", 1


def _options_class(command: Command | None) -> type | None:
    """The command's options dataclass, or None (no command, or it cannot be imported)."""
    if command is None:
        return None
    try:
        return resolve(command.options)
    except Exception:  # noqa: BLE001  (the error being reported may be this very import)
        return None


def _change_that_value(command: Command | None, cls: type | None) -> str:
    """The fix for a bare rule: where the command takes its values from."""
    import dataclasses

    if (
        command is None
        or cls is None
        or any(f.metadata.get("cli", {}).get("config_flags") for f in dataclasses.fields(cls))
    ):
        return "change that value (in the YAML config, or with --set / its flag)"
    return f"change that flag (`{PROG} {command.name} --help` lists them)"


def _raised_by_us(e: BaseException) -> bool:
    """Whether the innermost Python frame that raised `e` is this package's code (or there
    is no traceback to tell). A ValueError from inside torch, NCCL or numpy ("Tensors must be
    contiguous") is a failure of the program, not of the invocation: it must not be reported as
    a value the user should change."""
    tb = e.__traceback__
    if tb is None or isinstance(e, OSError):
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    module = tb.tb_frame.f_globals.get("__name__", "")
    return module.startswith(("implicit_em", "__main__", "argparse"))


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
    p = Parser(
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
    p = Parser(
        prog=f"{PROG} {command.name}",
        description=command.help + (f"\n\n{doc}" if doc and not doc.startswith(cls.__name__ + "(") else ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    add_options(p, cls)
    epilog = getattr(cls, "cli_epilog", None)  # what the flags cannot say (a list of names)
    if callable(epilog):
        p.epilog = epilog()
    return p


def _find(argv: list[str]) -> tuple[Command | None, int]:
    best, n = None, 0
    for c in COMMANDS:
        words = c.name.split()
        if argv[: len(words)] == words and len(words) > n:
            best, n = c, len(words)
    return best, n


def _group_depth(argv: list[str]) -> int:
    """How many leading words of argv name a group ("eval-suite probing-study": 2; none: 0)."""
    depth = 0
    for n in range(1, len(argv) + 1):
        if " ".join(argv[:n]) in GROUPS:
            depth = n
    return depth


def _hint(bad: str, prefix: str) -> str:
    """The fix for an unknown command `bad`: the closest name; inside a group (`prefix`, such
    as "eval-suite"), the group's own subcommands."""
    if not prefix:
        names = sorted({c.name for c in COMMANDS} | set(GROUPS))
        close = difflib.get_close_matches(bad, names, n=1)
        return f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(names)}"
    group = prefix.split()
    words = [c.name.split() for c in COMMANDS]
    subs = list(
        dict.fromkeys(w[len(group)] for w in words if w[: len(group)] == group and w != group)
    )
    close = difflib.get_close_matches(bad.split()[-1], subs, n=1)
    if close:
        return f"did you mean '{prefix} {close[0]}'? ({prefix}'s commands: {', '.join(subs)})"
    return (
        f"choose one of {prefix} {', '.join(subs)} (`{PROG} {prefix} --help` says what each does)"
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of `implicit-em`; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv[: argv.index("--") if "--" in argv else len(argv)]
    if debug:
        argv.remove("--debug")
    command, n = _find(argv)
    if command is None:
        depth = _group_depth(argv)  # words of the longest group the line starts with
        prefix = " ".join(argv[:depth])
        words = [w for w in argv if not w.startswith("-")]
        p = _overview(prefix)
        if words and words[0] not in GROUPS or (prefix and len(words) > depth):
            bad = " ".join(words[: depth + 1])
            print(f"{PROG}: error: unknown command {bad!r}: {_hint(bad, prefix)}", file=sys.stderr)
            return 2
        try:
            p.parse_args(argv[depth:])  # prints help (0) or usage (2)
        except SystemExit as e:
            return int(e.code or 0)
        return 2

    def terminate(signum, frame):
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave SIGTERM alone
        previous = None
    try:
        cls = resolve(command.options)
        parser = parser_for(command)
        try:
            ns = parser.parse_args(argv[n:])
        except SystemExit as e:  # --help (0) or a usage error argparse already printed (2)
            return int(e.code or 0)
        from implicit_em.cli.options import build_options

        opts = build_options(cls, ns)
        run = resolve(command.run)  # the heavy imports (torch, ...) start here, not for --help
        return exit_status(run(opts))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted (SIGINT): {INTERRUPTED}", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM): {INTERRUPTED}", file=sys.stderr)
        return 143
    except Exception as e:  # noqa: BLE001  (the one place that turns errors into exit codes)
        if debug:
            raise
        msg, status = error_line(e, command)
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return status
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
