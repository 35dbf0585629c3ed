# Two entry points for a fresh machine with only Python 3.11+:
#   make run   - set up, train the default run if the checkpoint root has none, start the app
#   make test  - set up (with the dev tools) and run lint and the whole test suite
PYTHON ?= python3
TOOLS := .tools
UV := $(TOOLS)/bin/uv
# The same uv as the Dockerfile's build stage.
UV_VERSION := 0.13.9
ARGS ?=

.PHONY: run test test-fast lint train bench passwd clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

run: $(UV)
	$(UV) sync --locked --inexact --no-dev --quiet
	$(UV) run --no-sync interp-app $(ARGS)

train: $(UV)
	$(UV) sync --locked --inexact --no-dev --quiet
	$(UV) run --no-sync interp-train $(ARGS)

lint: $(UV)
	$(UV) sync --locked --inexact --group dev --quiet
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
	$(UV) run --no-sync hadolint --failure-threshold error Dockerfile

test: lint
	$(UV) run --no-sync pytest $(ARGS)

# make test-fast: the fast tier, no lint (under 90 s on two cores); tests/conftest.py marks
# slow every test that needs the full default run, serves the app, drives a browser, trains
# a run of its own or starts a Python process
test-fast: $(UV)
	$(UV) sync --locked --inexact --group dev --quiet
	$(UV) run --no-sync pytest -m "not slow and not browser" $(ARGS)

bench: $(UV)
	$(UV) sync --locked --inexact --group dev --quiet
	$(UV) run --no-sync python bench/train_bench.py
	$(UV) run --no-sync python bench/app_bench.py
	$(UV) run --no-sync python bench/timeline_bench.py
	$(UV) run --no-sync python bench/causal_bench.py
	$(UV) run --no-sync python bench/forward3d_bench.py
	$(UV) run --no-sync python bench/load_bench.py

# make passwd NAME=alice: add or change a user in auth/users (the compose app reads /auth/users)
passwd: $(UV)
	$(UV) sync --locked --inexact --no-dev --quiet
	$(UV) run --no-sync interp-passwd auth/users $(NAME)

clean:
	rm -rf .venv $(TOOLS) .pytest_cache .ruff_cache .mypy_cache test-artifacts
