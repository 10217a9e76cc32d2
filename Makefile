# `make demo` and `make test` set up .venv on first use, then do their job.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the test suite's processes (pytest-xdist; each module stays on one, so its fixtures are built once)
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

# The browser test renders report.html in Debian's chromium; installed when missing
# (as root, or through sudo). Where it cannot be, the test skips and says why.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test bench clean chromium java

$(STAMP): pyproject.toml constraints-cpu.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints-cpu.txt torch==2.13.0
	$(BIN)/pip install --quiet -c constraints-cpu.txt -e '.[test,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/ouroboros demo --out runs/demo

chromium:
	@command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: the browser test will skip"

# METEOR runs pycocoevalcap's meteor-1.5.jar, and the tokenizer test compares with its Java
# PTBTokenizer: Debian's Java is installed when missing, as chromium is. Where it cannot be,
# those tests skip and say why.
java:
	@command -v java >/dev/null || ($(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq default-jre-headless) \
		|| echo "Java could not be installed: the METEOR and Java tokenizer tests will skip"

test: $(STAMP) chromium java
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

bench: $(STAMP)
	$(BIN)/python benchmarks/demo.py

clean:
	rm -rf $(VENV) runs
