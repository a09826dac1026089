# The two commands a user needs: `make demo` and `make test`.
# Everything else here is what those two are made of.
VENV := .venv/bin
SP := $(VENV)/spreadpilot

.PHONY: demo test setup services-up services-down lint typecheck audit unit integration e2e bench clean

demo: setup
	$(SP) demo

test: setup services-up lint typecheck audit
	$(VENV)/pytest -q -p no:cacheprovider

setup:
	bash scripts/bootstrap.sh

services-up: setup
	$(SP) services up

services-down:
	$(SP) services down

lint: setup
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

typecheck: setup
	$(VENV)/mypy

audit: setup
	bash scripts/audit.sh

unit: setup
	$(VENV)/pytest -q tests/unit

integration: setup services-up
	$(VENV)/pytest -q tests/integration

e2e: setup services-up
	$(VENV)/pytest -q tests/e2e

bench: setup services-up
	$(VENV)/python -m bench

clean:
	-$(SP) services down
	rm -rf .devstack demo-report .mypy_cache .ruff_cache
