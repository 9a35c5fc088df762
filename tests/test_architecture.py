"""Guard rails of the house plan (docs/architecture.md): floors, the CLI on top, no cycles.

Imports are read from the source with `ast` (module level and inside functions alike), so a
lazy import counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "implicit_em"

# Floors, bottom to top: a module may import from its own floor and the floors below it.
FLOORS: list[tuple[int, tuple[str, ...]]] = [
    (1, ("config", "losses", "metrics", "probe", "atomic", "options", "theorem", "allocator", "progress",
         "_moved", "_lazy", "families.registry", "colstats", "kernels",
         "eval.selected_redundancy", "eval.feature_f1")),
    (2, ("models", "families", "runs")),
    (3, ("data",)),
    (4, ("training", "stacked", "distributed", "estimator", "train", "tracking")),
    (5, ("evaluate", "lm_eval", "workflows", "interop", "dashboard", "eval")),
    (6, ("experiments",)),
    (7, ("cli",)),
]  # fmt: skip

# Deprecated aliases of moved modules (`implicit_em._moved.alias`): they import their new
# home, wherever it now lives, and nothing else.
ALIASES = {"data.idx", "data.mnist", "data.digits", "data.sources", "data.corpus",
           "data.activations", "training", "stacked", "distributed", "evaluate",
           "experiments.workers"}  # fmt: skip


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file (implicit_em. prefix dropped for
    the package's own modules; `from pkg import mod` counted as pkg.mod when mod exists)."""
    out: set[str] = set()
    known = modules()
    tree = ast.parse(path.read_text())
    for node in tree.body:  # `if __name__ == "__main__":` is an entry point, not a dependency
        if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            tree.body.remove(node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            for a in node.names:
                sub = f"{node.module}.{a.name}".removeprefix("implicit_em.")
                if sub in known:
                    out.add(f"implicit_em.{sub}")
    return {m.removeprefix("implicit_em.") if m.startswith("implicit_em.") else
            ("" if m == "implicit_em" else "!" + m) for m in out}  # fmt: skip


def floor_of(name: str) -> int | None:
    """The floor of the longest entry of FLOORS that is `name` or a package above it."""
    best, length = None, -1
    for floor, names in FLOORS:
        for entry in names:
            if (name == entry or name.startswith(entry + ".")) and len(entry) > length:
                best, length = floor, len(entry)
    return best


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: {m for m in imports_of(path) if m and not m.startswith("!")}
            for name, path in mods.items()}  # fmt: skip


def test_every_module_has_a_floor():
    missing = [m for m in modules() if m and floor_of(m) is None]
    assert missing == [], f"add these modules to FLOORS (and docs/architecture.md): {missing}"


@pytest.mark.parametrize("name", sorted(m for m in modules() if m))
def test_imports_go_down_only(name):
    if name in ALIASES:
        return
    floor = floor_of(name)
    up = sorted(m for m in graph()[name] if (floor_of(m) or 0) > floor)
    assert up == [], f"{name} (floor {floor}) imports from above: {up}"


def test_only_the_cli_uses_argparse():
    users = sorted(name for name, path in modules().items()
                   if "!argparse" in imports_of(path) and not name.startswith("cli"))  # fmt: skip
    assert users == [], f"argparse outside implicit_em.cli: {users}"


def test_nothing_below_imports_the_cli_or_experiments():
    for name, deps in graph().items():
        if not name.startswith("cli"):
            assert not any(d.startswith("cli") for d in deps), f"{name} imports the CLI"
        if floor_of(name) and floor_of(name) < 6:
            assert not any(d.startswith("experiments") for d in deps), f"{name} imports experiments"


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if m in ALIASES or m not in g:
                continue
            if state.get(m) == 1:
                cycles.append(stack[stack.index(m):] + [m])
            elif m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(g):
        if n and n not in state:
            visit(n)
    # A package's __init__ re-exporting its own modules is not a cycle between modules.
    real = [c for c in cycles if not any(a == "" or b.startswith(a + ".") or a.startswith(b + ".")
                                          for a, b in zip(c, c[1:], strict=False))]  # fmt: skip
    assert real == [], f"import cycles: {real}"


def test_cli_help_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; from implicit_em.cli import main; "
            "rc = None\ntry:\n    main(['--help'])\nexcept SystemExit: pass\n"
            "heavy = sorted(m for m in ('torch', 'numpy', 'sklearn', 'yaml', 'implicit_em.config')"
            " if m in sys.modules)\nprint('HEAVY', heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout


def test_subcommand_help_imports_nothing_heavy():
    """`implicit-em <command> --help` for every command imports no torch, numpy,
    transformers, matplotlib or sklearn (the options dataclasses sit in light modules)."""
    import subprocess
    import sys

    from implicit_em.cli.commands import COMMANDS

    names = [c.name for c in COMMANDS]
    assert {"harvest", "llm-train", "ddp", "dashboard", "eval-suite probing", "reproduce"} <= set(names)
    code = (
        "import sys, contextlib, io\nfrom implicit_em.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(sys.argv[1].split() + ['--help'])\n"
        "    except SystemExit:\n        pass\n"
        "print(sorted(m for m in ('torch', 'numpy', 'transformers', 'matplotlib', 'sklearn')"
        " if m in sys.modules))"
    )
    heavy = {}
    for name in names:
        out = subprocess.run([sys.executable, "-c", code, name], capture_output=True, text=True,
                             check=True).stdout.strip()  # fmt: skip
        if out != "[]":
            heavy[name] = out
    assert heavy == {}, f"--help imports heavy modules: {heavy}"
