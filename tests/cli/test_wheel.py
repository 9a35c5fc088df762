"""A wheel built with `pip wheel .` and installed non-editable runs the reproduction from an
unrelated directory (configs ship as package data; nothing reads the source tree).

The temporary environment sees the current one's site-packages through a .pth file, for torch
and the other dependencies, but not its editable install of implicit_em (a .pth inside a
directory added by a .pth is not processed), so the package comes from the wheel alone.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    # PYTHONPATH would let pip and the interpreter see a source tree instead of the wheel.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, env=env)
    assert out.returncode == 0, f"{cmd} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.mark.slow
def test_wheel_installs_and_reproduces_from_an_unrelated_directory(tmp_path):
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", wheels], cwd=tmp_path)  # fmt: skip
    (wheel,) = wheels.glob("implicit_em-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for cfg in ("default", "quick", "ablation", "benchmark", "dynamics"):
        assert f"implicit_em/configs/{cfg}.yaml" in names

    env_dir = tmp_path / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path).stdout.strip())  # fmt: skip
    (site / "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([py, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel], cwd=tmp_path)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = run([py, "-c", "import implicit_em.cli as c; print(c.__file__)"], elsewhere)
    assert where.stdout.strip().startswith(str(site)), where.stdout
    out = tmp_path / "results"
    run([env_dir / "bin" / "implicit-em", "reproduce", "--quick", "--device", "cpu", "--quiet",
         "--only", "theorem", "ablation", "--set", "data.dataset=digits",
         "--set", "training.epochs=1", "--threads", "1", "--jobs", "1", "--out", out],
        elsewhere)  # fmt: skip
    report = (out / "report.md").read_text()
    assert "Experiment 2: ablation (Table 5)" in report and "var + tc only" in report
