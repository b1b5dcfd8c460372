# Two entry points for a fresh machine with only python3 and make:
#   make demo   bootstrap uv inside the repo, install from uv.lock, run `capi-pipeline demo`
#   make test   the same set-up, then the whole test suite
UV_VERSION := 0.13.8
UV := .tools/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Some machines set PYTHONDONTWRITEBYTECODE=1; an empty value lets Python cache our own modules again.
export PYTHONDONTWRITEBYTECODE :=

.PHONY: setup demo test bench clean

$(UV):
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

setup: $(UV)
	$(UV) sync --locked --compile-bytecode

demo: setup
	.venv/bin/capi-pipeline demo

test: setup
	.venv/bin/python -m pytest

bench: setup
	.venv/bin/python bench/transform.py
	.venv/bin/python bench/upload.py
	.venv/bin/python bench/e2e.py

clean:
	rm -rf .venv .tools work
