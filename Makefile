# Two commands on a fresh machine: `make report` (the main job) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: report test lab install bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[notebooks,dev]'
	@touch $(STAMP)

install: $(STAMP)

## The main job: execute every notebook in lab mode (offline) into reports/ as .ipynb and .html.
report: $(STAMP)
	$(BIN)/python -m helpers run-notebooks --out reports

## Lint, then the whole test suite (notebooks included), on every core.
test: $(STAMP)
	$(BIN)/ruff check helpers tests bench scripts
	$(BIN)/python -m pytest -n auto

## JupyterLab on the kit, opened at notebooks/ (docs/ reachable: 01 links the glossary); notebooks in
## notebooks/ are saved as committed (no outputs, no kernel metadata), other files as they are; works as root.
lab: $(STAMP)
	$(BIN)/jupyter lab --allow-root --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/notebooks \
	    --FileContentsManager.pre_save_hook=helpers.notebook.strip_outputs_before_save

## Speed figures quoted in the README (run on demand).
bench: $(STAMP)
	@for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) reports/*.ipynb reports/*.html reports/*.md
