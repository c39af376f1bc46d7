# Two commands do all set-up on a fresh machine (see README):
#   make run    set up .venv if needed, then open Desktop FT
#   make test   set up .venv if needed, then the checks (import layers, ruff, mypy) and the whole test suite
#   make bundle the offline Linux app folder and tarball in dist/ (PyInstaller; 10+ minutes)
#   make wheel  the wheel in dist/ (pip install dist/desktop_ft-*.whl)
.PHONY: run test test-fast setup lint bench bundle bundle-test wheel

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

wheel: setup
	.venv/bin/python -m pip wheel --no-deps --no-build-isolation -q -w dist .

bundle: setup
	PYTHON=.venv/bin/python packaging/build_bundle.sh

bundle-test:
	packaging/smoke_test.sh dist/desktop-ft-*-linux-*.tar.gz
