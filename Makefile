# The two commands of the README: `make book` builds the book, `make test` runs the tests.
# Each first makes sure the virtual environment .venv exists (Python 3.11) and holds the pinned
# requirements: it installs them on first use, and again only when requirements.txt,
# constraints.txt or pyproject.toml have changed since (a hash of them is kept in .venv).

VENV := .venv
VENV_PYTHON := $(VENV)/bin/python
PINS := requirements.txt constraints.txt pyproject.toml
# The hash of $(PINS) that .venv was last installed from.
STAMP := $(VENV)/.pins-sha256
# Extra arguments for pytest, e.g. make test PYTEST_ARGS='-m "not book"'
PYTEST_ARGS ?=
# The interpreter .venv is made with; override with make PYTHON=/path/to/python3.11
PYTHON ?= $(shell command -v python3.11 || command -v python3)
HASH_PINS := import hashlib, sys; \
	print(hashlib.sha256(b"".join(open(f, "rb").read() for f in sys.argv[1:])).hexdigest())
IS_PYTHON_311 := import sys; sys.exit(sys.version_info[:2] != (3, 11))

.PHONY: book test venv clean distclean

book: venv
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "The book is in _build/html/ (open _build/html/index.html)."

test: venv
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

venv:
	@if [ -z "$(PYTHON)" ]; then \
		echo "error: no python3.11 or python3 on PATH; install Python 3.11" >&2; exit 1; \
	fi
	@if ! "$(PYTHON)" -c '$(IS_PYTHON_311)'; then \
		echo "error: the book needs Python 3.11, and $(PYTHON) is" \
			"$$("$(PYTHON)" --version 2>&1); install Python 3.11 or run" \
			"make PYTHON=/path/to/python3.11" >&2; \
		exit 1; \
	fi
	@if [ -x $(VENV_PYTHON) ] && ! $(VENV_PYTHON) -c '$(IS_PYTHON_311)'; then \
		echo "error: $(VENV) is not Python 3.11; remove it (make distclean) and run make again" >&2; \
		exit 1; \
	fi
	@pins=$$("$(PYTHON)" -c '$(HASH_PINS)' $(PINS)) && \
	if [ ! -x $(VENV_PYTHON) ] || [ "$$(cat $(STAMP) 2>/dev/null)" != "$$pins" ]; then \
		echo "Installing the pinned requirements into $(VENV) (the first time takes a few minutes)"; \
		rm -f $(STAMP) && \
		{ [ -x $(VENV_PYTHON) ] || "$(PYTHON)" -m venv $(VENV); } && \
		$(VENV_PYTHON) -m pip install --quiet -r requirements.txt && \
		$(VENV_PYTHON) -m pip check && \
		echo "$$pins" > $(STAMP); \
	fi

# The built book and the execution cache: the next build runs every notebook again.
clean:
	rm -rf _build

distclean: clean
	rm -rf $(VENV)
