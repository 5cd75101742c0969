# postwarden: everything a fresh Debian 12 machine needs comes from here.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# Debian's interpreter, the one python3-venv and python3-dev are for and the one a Debian
# install runs (contrib/systemd/README.md), not whichever python3 comes first in PATH:
# the tests must run on what is deployed (Debian's 3.11.2 matched some patterns otherwise
# than a later 3.11: postwarden_policies.htmltokens), and pyenv's default build (a shared
# libpython, without the distribution's optimisations) ran our code 20-25% slower.
SYSTEM_PYTHON ?= /usr/bin/python3
# A virtualenv made on another Python (as earlier versions of this file did) is made anew.
STALE_VENV := $(if $(and $(realpath $(PY)),$(filter-out $(realpath $(SYSTEM_PYTHON)),$(realpath $(PY)))),FORCE)
APT_PACKAGES := postfix libmilter-dev postgresql-15 postgresql-client-15 build-essential python3-venv python3-dev \
  systemd
EXAMPLES := policies/examples

.PHONY: test lint typecheck pytest policy-check demo bench deps venv clean FORCE

test: deps venv lint typecheck policy-check pytest

# Install the Debian packages that are missing (as root, or through sudo).
deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  echo "postfix postfix/main_mailer_type select No configuration" | $$SUDO debconf-set-selections; \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(STALE_VENV)
	if [ -x $(PY) ] && [ "$$(realpath $(PY))" != "$$(realpath $(SYSTEM_PYTHON))" ]; then \
	  echo "$(VENV) was made on $$(realpath $(PY)): making it anew on $(SYSTEM_PYTHON)"; \
	  rm -rf $(VENV); \
	fi
	test -x $(PY) || $(SYSTEM_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

lint: venv
	$(VENV)/bin/ruff check .

typecheck: venv
	$(VENV)/bin/mypy

policy-check: venv
	$(VENV)/bin/postwarden-policy check $(EXAMPLES)
	$(VENV)/bin/postwarden-policy test --whole-set $(EXAMPLES)

pytest: venv
	$(PY) -m pytest $(PYTEST_ARGS)

demo: deps venv
	$(PY) contrib/demo/demo.py

bench: deps venv
	$(PY) bench/policy_eval.py

FORCE:

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
