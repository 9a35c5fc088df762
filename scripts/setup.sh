#!/usr/bin/env bash
# Set up a fresh machine: a virtualenv in .venv with implicit-em and its extras, the real data.
# torch is pinned to a CPU build here; the package itself only asks for torch>=2.1, so on a GPU
# machine install your CUDA build of torch first and drop the pin (TORCH_SPEC="torch").
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

# Fashion-MNIST (used by tests and the OOD study) from Debian, when apt is available.
if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist || \
    echo "setup: could not install dataset-fashion-mnist; the Fashion-MNIST test and OOD study need it"
fi

# Headless Chromium and its driver for the dashboard's browser test (tests fail without them).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver || \
      echo "setup: could not install chromium; tests/test_dashboard_browser.py needs it"
  else
    echo "setup: install chromium and chromedriver; tests/test_dashboard_browser.py needs them"
  fi
fi

[ -d .venv ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "$TORCH_SPEC" -e ".[dev,llm,saelens,tracking]"
.venv/bin/implicit-em data fetch mnist
if [ -d /usr/share/datasets/fashion-mnist ]; then .venv/bin/implicit-em data fetch fashion-mnist; fi
