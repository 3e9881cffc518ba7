# PromptMix Studio. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
PORT ?= 8501
ADDRESS ?= 127.0.0.1

.PHONY: setup run test test-fast lint-js bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup_env.py
	$(PYTHON) scripts/setup_env.py --venv $(VENV)
	@touch $(STAMP)

run: setup
	@$(BIN)/python scripts/check_network.py --address $(ADDRESS)
	$(BIN)/streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT)

test: setup
	$(BIN)/python scripts/ensure_browser.py
	$(BIN)/python scripts/ensure_js.py --lint
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow and not browser"

lint-js:
	python3 scripts/ensure_js.py --lint

bench: setup
	$(BIN)/python benchmarks/llm_pipeline.py

clean:
	rm -rf $(VENV) build *.egg-info
