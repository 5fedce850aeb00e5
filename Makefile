# LINAS+ — `make paper` reruns every notebook of a profile whose inputs changed (content
# stamps in .cache/stamps/, see linas_lib/paper.py); `make help` lists targets.
PROFILE ?= cpu
SEED ?= 0
COMMIT ?= HEAD
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# PROFILE may be a name (smoke|cpu|full) or a path to a YAML file; results go under its stem.
PROFILE_NAME := $(basename $(notdir $(PROFILE)))

.PHONY: help install paper smoke compare replicate goals luts bench final numerics-check test lab clean-executed
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (smoke|cpu|full) SEED=$(SEED) ADD_SEEDS= (make bench) NB= COMMIT=HEAD (make replicate)"

install: $(INSTALLED) ## create .venv and install the pinned packages (first use only)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

paper: $(INSTALLED) ## run every notebook of PROFILE (default cpu) whose inputs changed
	$(PY) -m linas_lib.cli paper --profile $(PROFILE) --seed $(SEED)

smoke: ## `make paper` with the tiny smoke profile
	$(MAKE) paper PROFILE=smoke

compare: $(INSTALLED) ## compare PROFILE's reproduced summary figures with the committed ones
	$(PY) -m linas_lib.cli compare --profile $(PROFILE)

replicate: $(INSTALLED) ## rerun notebook NB (e.g. NB=05_pareto) of commit COMMIT (default HEAD) in a clean clone with a cold cache; its files and compare table go to results/<profile>/replicas/ (resumes)
	$(PY) -m linas_lib.cli replicate --profile $(PROFILE_NAME) --only $(NB) --commit $(COMMIT)

goals: $(INSTALLED) ## the issues' goals from PROFILE's summaries: results/<profile>/goals.md and README's block
	$(PY) -m linas_lib.cli goals --profile $(PROFILE_NAME) --readme

luts: $(INSTALLED) ## re-measure this machine's LUTs of PROFILE into the committed LUT files
	$(PY) -m linas_lib.cli lut measure --profile $(PROFILE)

bench: $(INSTALLED) ## build or resume PROFILE's standalone benchmark table on Dask (results/<profile>/bench/); ADD_SEEDS=2,3 trains more seeds of its architectures instead (items and bench/extension.json only)
	$(PY) -m linas_lib.cli bench build --profile $(PROFILE) $(if $(ADD_SEEDS),--add-seeds $(ADD_SEEDS))

final: $(INSTALLED) ## train notebook 05's final networks of PROFILE (every arm of its chosen.csv), its near-smallest pairs, 09's re-picks and study choice_truth's candidates (with their fresh fine-tunes: needs 05's supernet) with the table's recipe on Dask; `make paper` then reads them
	$(PY) -m linas_lib.cli bench final --profile $(PROFILE)
	$(if $(wildcard results/$(PROFILE)/05_pareto/near_smallest_pairs.csv),$(PY) -m linas_lib.cli bench near-smallest --profile $(PROFILE))
	$(if $(wildcard results/$(PROFILE)/05_pareto/choice_candidates.csv),$(PY) -m linas_lib.cli bench final --profile $(PROFILE) --rule registered)
	$(if $(wildcard results/$(PROFILE)/05_pareto/choice_candidates.csv),$(PY) -m linas_lib.cli bench retune --profile $(PROFILE))
	$(if $(wildcard results/$(PROFILE)/05_pareto/choice_candidates.csv),$(PY) -m linas_lib.cli bench candidates --profile $(PROFILE))

numerics-check: $(INSTALLED) ## native vs portable numerics (LINAS_NUMERICS) on this CPU and simulated older ones: results/<profile>/bench/numerics/ (timed: run it alone; with LINAS_NUMERICS=portable the taps are portable too)
	$(PY) -m linas_lib.cli numerics check --profile $(PROFILE)

test: $(INSTALLED) ## run the test suite (includes a smoke run of every notebook)
	$(PY) -m pytest -q -rs tests

lab: $(INSTALLED) ## JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks

clean-executed: ## delete executed notebook copies of PROFILE (never results)
	rm -rf results/$(PROFILE_NAME)/executed
