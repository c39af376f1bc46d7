#!/usr/bin/env bash
# Smoke-test the offline bundle as a new user would meet it: unpack the tarball into an empty folder
# and run it with a clean environment (env -i), an empty HOME, no Python on PATH and no network
# (HF_HUB_OFFLINE); nothing from the build machine's venv can leak in.
#   packaging/smoke_test.sh dist/desktop-ft-0.1.0-linux-x86_64.tar.gz
set -euo pipefail
tarball="$(realpath "${1:?usage: smoke_test.sh TARBALL}")"
root="$(mktemp -d /tmp/desktop-ft-smoke.XXXXXX)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/home" "$root/work"
t0=$(date +%s.%N)
tar -xzf "$tarball" -C "$root"
app="$root/desktop-ft/desktop-ft"
echo "smoke: unpacked in $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s into $root ($(du -sh "$root/desktop-ft" | cut -f1))"

run() {  # a clean environment: only what a desktop session would have, nothing pointing at a Python
  (cd "$root/work" && env -i HOME="$root/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
     HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 "$app" "$@")
}
step() { echo; echo "smoke: $*"; }

step "--version"
t0=$(date +%s.%N)
run --version
echo "smoke: --version took $(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}") s"

step "doctor --window (first start: converts the built-in model into the empty home's cache)"
run doctor --window

step "a 1-step LoRA training on the built-in model and the sample data (CLI, in-process)"
run train --max-steps 1 --output-dir "$root/work/run-cli"
test -f "$root/work/run-cli/adapter/adapter_config.json"

step "the window trains through its child process (the frozen app starting itself) and chats"
run screenshots --steps 2 "$root/work/shots"
for page in model dataset method memory training chat runs; do test -s "$root/work/shots/$page.png"; done

step "GGUF export through the bundled llama.cpp converter"
run export "$root/work/run-cli" --format gguf --quantization q8_0 --out "$root/work/gguf"
ls "$root/work/gguf"/*.gguf

step "desktop entry into the empty home"
run desktop-entry install
grep "^Exec=$app" "$root/home/.local/share/applications/io.github.desktopft.DesktopFT.desktop"
run desktop-entry uninstall

echo; echo "smoke: all passed"
