# LINAS+ — `make paper` reruns every stale notebook of a profile; `make help` lists targets.
PROFILE ?= cpu
SEED ?= 0
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
NAMES := $(notdir $(basename $(NOTEBOOKS)))
LIB := $(wildcard linas_lib/*.py linas_lib/*/*.py)
# PROFILE may be a name (smoke|cpu|full) or a path to a YAML file; results go under its stem.
PROFILE_FILE := $(if $(findstring /,$(PROFILE)),$(PROFILE),linas_lib/profiles/$(PROFILE).yaml)
PROFILE_NAME := $(basename $(notdir $(PROFILE)))
summary = results/$(PROFILE_NAME)/$(1)/summary.json

.PHONY: help install paper smoke test lab clean-executed
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'
	@echo "  variables: PROFILE=$(PROFILE) (smoke|cpu|full) SEED=$(SEED)"

install: $(INSTALLED) ## create .venv and install the pinned packages (first use only)

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

paper: $(INSTALLED) $(foreach n,$(NAMES),$(call summary,$(n))) ## run every stale notebook of PROFILE (default cpu)

smoke: ## `make paper` with the tiny smoke profile
	$(MAKE) paper PROFILE=smoke

test: $(INSTALLED) ## run the test suite (includes a smoke run of every notebook)
	$(PY) -m pytest -q -rs tests

lab: $(INSTALLED) ## JupyterLab on the notebooks
	$(VENV)/bin/jupyter lab notebooks

clean-executed: ## delete executed notebook copies of PROFILE (never results)
	rm -rf results/$(PROFILE_NAME)/executed

# One rule per notebook: its summary.json is stale when the notebook, the library, the
# profile or the previous notebook's outputs change.
define notebook_rule
$(call summary,$(1)): notebooks/$(1).ipynb $(LIB) $(PROFILE_FILE) $(2) | $(INSTALLED)
	$(PY) -m linas_lib.cli notebook $(1) --profile $(PROFILE) --seed $(SEED)
endef
$(foreach i,$(shell seq 1 $(words $(NAMES))),$(eval $(call notebook_rule,$(word $(i),$(NAMES)),$(if $(filter 1,$(i)),,$(call summary,$(word $(shell expr $(i) - 1),$(NAMES)))))))
