# The two commands: `make run` (install, then run the main job on the embedded default) and `make test`.
VENV ?= .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export TORCH_EXTENSIONS_DIR ?= $(CURDIR)/.cache/torch_extensions
export STAR1_CACHE ?= $(CURDIR)/.cache/star1

.PHONY: setup run test rehearsal lint k8s lock bench-collect clean

setup:
	@bash scripts/setup.sh

run: setup
	star1 pipeline

# Two pytest workers, one test file each at a time (module fixtures stay in one process): see docs/testing.md.
test: setup
	python -m pytest -q -n 2 --dist loadfile

# The cluster rehearsal alone (it is part of `make test` too): every RayJob the chart renders, run from its own
# entrypoint and config on a local multi-node Ray cluster (docs/kubernetes.md, "The cluster rehearsal").
rehearsal: setup
	python -m pytest -q tests/test_rehearsal.py

lint: setup
	ruff check star1 tests bench jobs && ruff format --check star1 tests bench jobs

# Re-render k8s/ from helm/star1 with default values (tests/test_chart.py keeps them identical).
k8s: setup
	python -m star1.deploy.chart write

# Regenerate the images' hash-locked requirements (requirements/*.lock.txt) after pyproject.toml or
# constraints.txt changes: scripts/lock.sh, with uv (UV=/path/to/uv) and PyPI (docs/install.md, "Lock files").
# LOCK=cpu or LOCK=gpu regenerates one image's locks only.
LOCK ?= all
lock:
	bash scripts/lock.sh $(LOCK)

bench-collect: setup
	python bench/collect.py

clean:
	rm -rf artifacts .pytest_cache
