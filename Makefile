# The two commands: `make demo` and `make test` (and `make bench`). Each creates .venv when it is
# missing and installs torch FIRST through a constraint file, so nothing pulls a multi-GB CUDA
# build by accident. Override the torch requirement with e.g. `make test TORCH="torch==2.5.1"`.

PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
OUT ?= demo-out
# pytest workers (pytest-xdist): one per core, at most this many; each file runs whole in one
# worker, so its module fixtures (a rendered capture, a trained model) are built once
TEST_WORKERS ?= 4

.PHONY: demo test bench install install-test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# install EXTRAS: re-runs only when the torch spec, the extras or pyproject.toml change
define install_with
	@stamp="$(TORCH) [$(1)] $$(cksum < pyproject.toml)"; \
	if [ "$$(cat $(VENV)/.dspfx-installed 2>/dev/null)" != "$$stamp" ]; then \
		echo "$(TORCH)" > $(VENV)/constraints.txt && \
		$(PIP) install --disable-pip-version-check -q "$(TORCH)" && \
		$(PIP) install --disable-pip-version-check -q -c $(VENV)/constraints.txt -e ".$(if $(1),[$(1)])" && \
		echo "$$stamp" > $(VENV)/.dspfx-installed; \
	fi
endef

install: $(PY)
	$(call install_with,)

install-test: $(PY)
	$(call install_with,test)

demo: install
	$(VENV)/bin/dspfx demo --out $(OUT)

test: install-test
	$(PY) -m pytest -q -n auto --maxprocesses $(TEST_WORKERS) --dist loadfile

bench: install-test
	$(PY) benchmarks/units.py
	$(PY) benchmarks/synths.py

clean:
	rm -rf $(VENV) $(OUT) build *.egg-info .pytest_cache .hypothesis
