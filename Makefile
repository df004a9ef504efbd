# Two entry points for a fresh machine:
#   make run   installs the studio into .venv and starts it on http://localhost:8501
#   make test  installs the studio and its test tools into .venv and runs the tests
VENV   ?= .venv
PYTHON ?= python3
PY      = $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test install install-dev clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(PY) -m streamlit run studio/app.py --server.port $(PORT)

test: install-dev
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .pytest_cache
