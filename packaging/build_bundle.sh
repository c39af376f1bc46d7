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
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
  packaging/desktop-ft.spec
cp packaging/BUNDLE-README.txt dist/desktop-ft/README.txt
tarball="dist/desktop-ft-${version}-linux-${arch}.tar.gz"
tar -C dist -czf "$tarball" desktop-ft
echo "bundle: dist/desktop-ft ($(du -sh dist/desktop-ft | cut -f1)), $tarball ($(du -sh "$tarball" | cut -f1)), built in $(( $(date +%s) - start )) s"
