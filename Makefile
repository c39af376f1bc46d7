# Two commands do all set-up on a fresh machine (see README):
#   make run    set up .venv if needed, then open Desktop FT
#   make test   set up .venv if needed, then run the whole test suite
.PHONY: run test test-fast setup lint bench

setup:
	@scripts/setup.sh

run: setup
	.venv/bin/desktop-ft

test: setup
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -ra

test-fast: setup
	QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -ra -m "not slow"

lint: setup
	.venv/bin/lint-imports
