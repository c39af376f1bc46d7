# Two commands do all set-up on a fresh machine (see README):
#   make run    set up .venv if needed, then open Desktop FT
#   make test   set up .venv if needed, then the checks (import layers, ruff, mypy) and the whole test suite
.PHONY: run test test-fast setup lint bench

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/desktop-ft

test: lint
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -ra

test-fast: lint
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -ra -m "not slow"

# seconds, not minutes: the layers contract, ruff (pyflakes, pycodestyle, bugbear), mypy on desktop_ft/core
lint: setup
	.venv/bin/lint-imports
	.venv/bin/ruff check desktop_ft tests benchmarks
	.venv/bin/mypy
