# The two commands of the README: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)
	@scripts/system-deps.sh

# The sample data ends in 2026-10: the demo runs that month's full cycle into the outbox.
DEMO_PERIOD ?= 2026-10

demo: install
	$(VENV)/bin/reporter init . --sample --end $(DEMO_PERIOD)
	$(VENV)/bin/reporter validate -p .
	$(VENV)/bin/reporter scorecard -p . --period $(DEMO_PERIOD) --tier strategic
	$(VENV)/bin/reporter run -p . --report leadership_scorecard --period $(DEMO_PERIOD)
	$(VENV)/bin/reporter run -p . --report account_reviews --period $(DEMO_PERIOD)
	$(VENV)/bin/reporter verify -p .
	@echo
	@echo "Look at: output/outbox/ (the emails, .eml), output/archive/ (PDF/A-3b + manifest.jsonl),"
	@echo "         output/data_quality/rejected_rows.csv, and run: .venv/bin/reporter deliveries"

test: install
	$(VENV)/bin/reporter schema --check
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

bench: install
	$(PY) -m bench

clean:
	rm -rf $(VENV) output/* data/demo
