# Two commands: `make demo` (full notebook pipeline on the bundled sample task) and `make test`.
# Both create .venv on first use and install the pinned environment.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo smoke test test-browser lint format bench lab mlflow clean help

help:  ## list the targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==26.3
	# The CPU wheel of torch first: any other torch requirement pulls GBs of CUDA packages.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $@

setup: $(STAMP)  ## create .venv and install the pinned environment

demo: $(STAMP)  ## run the whole notebook pipeline on the bundled sample task -> runs/demo/index.html
	$(BIN)/nbkit run --params params/demo.yaml --out runs/demo

smoke: $(STAMP)  ## the same pipeline with CI-sized parameters -> runs/smoke/index.html
	$(BIN)/nbkit run --params params/smoke.yaml --out runs/smoke

test: lint  ## lint and the whole test suite
	$(BIN)/python -m pytest -q

lint: $(STAMP)  ## ruff, then mypy on nbkit (config in pyproject.toml)
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(STAMP)  ## ruff format + import sorting
	$(BIN)/ruff check --fix .

bench: $(STAMP)  ## every benchmark in bench/ (prints figures, last line JSON)
	for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# Jupyter refuses to start as root unless told; containers often run as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(STAMP)  ## JupyterLab on the notebooks
	$(BIN)/jupyter lab $(ALLOW_ROOT) notebooks

mlflow: $(STAMP)  ## MLflow UI on a run's store, opened on its training runs: make mlflow RUN=demo
	$(BIN)/nbkit mlflow runs/$(or $(RUN),demo) --port 5000

# The browser test drives Debian's chromium (never Playwright's own download); installed here when missing.
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

test-browser: $(STAMP)  ## the browser test (JupyterLab editor, reports, MLflow UI) in headless Chromium
	$(if $(CHROMIUM),,$(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py

clean:  ## remove runs and caches (keeps .venv)
	rm -rf runs .cache .pytest_cache .ruff_cache .mypy_cache
