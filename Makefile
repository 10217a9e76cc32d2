# `make demo` and `make test` set up .venv on first use, then do their job.
# Each step says what it installs and where before it does it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the test suite's processes (pytest-xdist; each module stays on one, so its fixtures are built once)
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

# torch: the CPU build from PyTorch's CPU wheel index, so a stock machine never downloads the
# multi-GB CUDA wheels (PyPI's torch is the CUDA build). The `+cpu` in the pin is what keeps
# CUDA out: only a CPU build carries it, and PyPI has none, so pip's own indexes are asked
# first (a local wheel folder or mirror in pip's config may have it) and the index only then.
#   TORCH_INDEX=URL   another wheel index (a mirror, or a CUDA one with TORCH=torch==2.13.0+cu128)
#   TORCH_INDEX=      pip's own indexes only
#   KEEP_TORCH=1      keep the torch you have: .venv sees the system's packages and torch is not installed
TORCH ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
KEEP_TORCH ?=
# The extras `make test` installs into .venv (the optional exporters are tested with the real libraries).
EXTRAS ?= test,ray,mlflow,tensorboard,docs
# NO_SYSTEM=1: install nothing system-wide (no apt-get); the tests that need chromium or Java skip.
NO_SYSTEM ?=

# The browser test renders report.html in Debian's chromium; METEOR and the tokenizer test run Java.
# Both are installed system-wide with apt-get when missing (as root, or through sudo, which may ask
# for a password: the line before says why). Where they cannot be, those tests skip and say why.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test docs bench bench-docs clean system

$(STAMP): pyproject.toml constraints-cpu.txt
ifeq ($(KEEP_TORCH),)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "installing $(TORCH) into $(VENV) from pip's own indexes$(if $(TORCH_INDEX), or else from $(TORCH_INDEX))"
	$(BIN)/pip install --quiet '$(TORCH)' 2>/dev/null \
		$(if $(TORCH_INDEX),|| $(BIN)/pip install --quiet --extra-index-url $(TORCH_INDEX) '$(TORCH)')
	cp constraints-cpu.txt $(VENV)/constraints.txt
else
	test -x $(BIN)/python || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@echo "keeping the torch $(VENV) sees: $$($(BIN)/python -c 'import torch; print(torch.__version__)')"
	grep -v '^torch==' constraints-cpu.txt >$(VENV)/constraints.txt
endif
	@echo "installing ouroboros (editable) with the extras [$(EXTRAS)] into $(VENV), pinned by constraints-cpu.txt"
	$(BIN)/pip install --quiet -c $(VENV)/constraints.txt -e '.[$(EXTRAS)]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ouroboros demo --out runs/demo

# The browser test renders report.html in Debian's chromium; METEOR (pycocoevalcap's
# meteor-1.5.jar) and the tokenizer test (its Java PTBTokenizer) run Java. Whichever is
# missing is installed with one apt-get.
system:
ifeq ($(NO_SYSTEM),)
	@missing="$$(command -v chromium >/dev/null || echo chromium) $$(command -v java >/dev/null || echo default-jre-headless)"; \
	missing="$$(echo $$missing)"; \
	[ -z "$$missing" ] || { echo "installing $$missing system-wide (apt-get) for the browser and METEOR tests" \
		&& $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; } \
		|| echo "$$missing could not be installed: the tests that need it will skip and say why"
endif

# The docs site (mkdocs.yml, docs/) into site/: a broken link or reference fails the build.
# The configuration and command-line pages are generated while it builds (docs/hooks.py).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# The benchmark outputs the Performance page shows (docs/benchmarks/), written again here.
bench-docs: $(STAMP)
	(echo '$$ python benchmarks/demo.py'; $(BIN)/python benchmarks/demo.py) >docs/benchmarks/demo.txt
	(echo '$$ python benchmarks/demo.py --config configs/scenarios-digits.yaml --target 900'; \
		$(BIN)/python benchmarks/demo.py --config configs/scenarios-digits.yaml --target 900) >docs/benchmarks/scenarios-digits.txt
	for c in captioning-digits tails-digits mad-digits stability-digits reward-digits; do \
		(echo "\$$ python benchmarks/demo.py --config configs/$$c.yaml --target 900"; \
		$(BIN)/python benchmarks/demo.py --config configs/$$c.yaml --target 900) >docs/benchmarks/$$c.txt; done
	(echo '$$ python benchmarks/metrics.py'; $(BIN)/python benchmarks/metrics.py) >docs/benchmarks/metrics.txt
	(echo '$$ python benchmarks/metrics.py --hard'; $(BIN)/python benchmarks/metrics.py --hard) >docs/benchmarks/metrics-hard.txt

# The Python environment and the system packages are set up side by side (pip and apt-get).
test:
	$(MAKE) -j2 $(STAMP) system
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope
	$(MAKE) docs

bench: $(STAMP)
	$(BIN)/python benchmarks/demo.py

clean:
	rm -rf $(VENV) runs site
