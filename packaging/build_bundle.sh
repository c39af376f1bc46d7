#!/usr/bin/env bash
# Build the offline Linux bundle: dist/desktop-ft/ (an app folder) and dist/desktop-ft-VERSION-linux-ARCH.tar.gz.
# Needs the set-up environment (make setup: CPU torch, the built-in model, llama.cpp's converter) and PyInstaller.
#   PYTHON=/path/to/python packaging/build_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
"$PY" -c 'import PyInstaller' 2>/dev/null || \
  "$PY" -m pip install -q -c requirements/constraints.txt pyinstaller pyinstaller-hooks-contrib
version="$("$PY" -c 'import desktop_ft; print(desktop_ft.__version__)')"
arch="$(uname -m)"
start=$(date +%s)
# PyInstaller reads the sources over many minutes: build from a snapshot, so an edit or a git merge
# meanwhile cannot leave the bundle with modules of two versions (it did once: an ImportError at run time)
src=build/bundle-src
rm -rf "$src" && mkdir -p "$src"
cp -r desktop_ft packaging pyproject.toml "$src/"
find "$src" -name __pycache__ -prune -exec rm -rf {} +
case "$PY" in  # absolute, without resolving a venv's symlink to the base interpreter
  */*) PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")" ;;
  *) PY="$(command -v "$PY")" ;;
esac
(cd "$src" && "$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath ../../dist \
   --workpath ../pyinstaller packaging/desktop-ft.spec)
cp packaging/BUNDLE-README.txt dist/desktop-ft/README.txt
tarball="dist/desktop-ft-${version}-linux-${arch}.tar.gz"
tar -C dist -czf "$tarball" desktop-ft
echo "bundle: dist/desktop-ft ($(du -sh dist/desktop-ft | cut -f1)), $tarball ($(du -sh "$tarball" | cut -f1)), built in $(( $(date +%s) - start )) s"
