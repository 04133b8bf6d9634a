# Two entry points for a fresh machine: `make toy` (the main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

YADAGE_STAMP := .venv-yadage/.installed

.PHONY: toy test lint bench clean yadage-env

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# yadage and reana-client pin jsonschema<=4.9.1 (pyhf needs newer), so they live in their own virtualenvs
$(YADAGE_STAMP): scripts/setup-yadage-env.sh
	PYTHON=$(PYTHON) bash scripts/setup-yadage-env.sh

yadage-env: $(YADAGE_STAMP)

toy: $(STAMP)
	$(BIN)/nsbiflow run workflows/toy-nsbi.yaml
	@echo
	@echo "To use the nsbiflow command in this shell: source $(VENV)/bin/activate   (or call $(BIN)/nsbiflow)"
	@echo "Then try: nsbiflow runs; nsbiflow report latest; see README.md for the tour"

test: $(STAMP) $(YADAGE_STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/python -m pytest -q --durations=25

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-yadage .venv-reana .nsbiflow
