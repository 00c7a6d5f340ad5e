# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CXR := $(VENV)/bin/cxr
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
DEMO_DICOM = $$($(PY) -c "from pydicom.data import get_testdata_file; print(get_testdata_file('RG1_UNCI.dcm'))")

.PHONY: demo test lint install bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e ".[dev,train]"
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(CXR) analyze $(DEMO_DICOM) --out demo-report --format json,html,png,dicom
	@echo "report written to demo-report/report.html"

test: $(STAMP)
	$(PY) -m pytest -q

# Lint and type check (configured in pyproject.toml); .ci/run runs this before `make test`.
lint: $(STAMP)
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/bench_analyze.py

clean:
	rm -rf demo-report .pytest_cache
