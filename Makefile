# The two commands: `make run` (the site with a Customer.io emulator) and `make test` (the whole suite).
SHELL := /bin/bash
VENV := .venv
VPY := $(VENV)/bin/python
# The first Python >= 3.11 on PATH (override with `make PYTHON=/path/to/python3.12 ...`).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { command -v $$p; break; }; done)

.PHONY: run manage test lint format docs docs-build screenshots bench-backfill bench-burst bench-accept bench-reporting smoke-production

$(VPY):
	@test -n "$(PYTHON)" || { echo "Python 3.11 or newer is required (none found on PATH)." >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-run: $(VPY) requirements.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VPY) requirements.txt requirements-dev.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(VPY) scripts/run_dev.py

# manage.py with the development settings `make run` uses, e.g. in a second terminal:
#   make manage ARGS="cio_sync_segments"
manage: $(VENV)/.installed-run
	$(VPY) scripts/manage_dev.py $(ARGS)

test: $(VENV)/.installed-dev
	$(VPY) -m pytest $(PYTEST_ARGS)

# The documentation's pictures: the browser tests, each saving the page it checked as docs/images/NAME.png
# (tests/browser/screenshots.py lists them; a missing browser fails rather than skips), then the check that the
# pages and the pictures match.
screenshots: $(VENV)/.installed-dev
	SAVE_SCREENSHOTS=docs/images REQUIRE_BROWSER_TESTS=1 $(VPY) -m pytest tests/browser -m browser -q $(PYTEST_ARGS)
	$(VPY) -m pytest -q tests/project/test_docs_images.py

# The backfill commands on 100,000 emulated Customer.io people, next to WP Fusion's per-user method (minutes).
bench-backfill: $(VENV)/.installed-run
	$(VPY) bench/backfill.py

# 1,000 queued webhooks against the rate-limited emulator, then again with 30 % of Customer.io requests failing;
# on SQLite, then on PostgreSQL (127.0.0.1:5432).
bench-burst: $(VENV)/.installed-run
	$(VPY) bench/burst.py
	$(VPY) bench/burst.py --postgres

# The webhook next to the minimal and the full-settings DRF floors (one INSERT, one commit) under gunicorn, on PostgreSQL
# (127.0.0.1:5432, when it answers) and SQLite; then accept latency at a fixed 100/s while a worker drains.
bench-accept: $(VENV)/.installed-run
	$(VPY) bench/accept.py

# 10,000 signed message events in a burst to the reporting webhook beside the accept benchmark's durable floors, on
# PostgreSQL (127.0.0.1:5432, when it answers) and SQLite; then a worker processing them.
bench-reporting: $(VENV)/.installed-run
	$(VPY) bench/reporting_burst.py

# The site as production runs it (gunicorn, PostgreSQL, a worker), checked over HTTP (CI runs it too).
smoke-production: $(VENV)/.installed-run
	$(VPY) scripts/smoke_production.py

$(VENV)/.installed-docs: $(VPY) requirements-docs.txt
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-docs.txt
	touch $@

# The documentation site (docs/, mkdocs.yml) on http://127.0.0.1:8001 with live reload.
docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VPY) -m mkdocs serve --dev-addr 127.0.0.1:8001

# The documentation site built into site/; --strict fails on a broken link or anchor, or a page not in the navigation.
docs-build: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(VPY) -m mkdocs build --strict

lint: $(VENV)/.installed-dev
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .

format: $(VENV)/.installed-dev
	$(VPY) -m ruff format .
	$(VPY) -m ruff check --fix .
