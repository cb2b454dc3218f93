# OpsPortal: `make demo` runs the portal on embedded defaults; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PORT ?= 8000
KUBE_PORT ?= 8001
KUBE_TOKEN := var/dev-kube-emulator-token

.PHONY: install demo test bench vendor clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

demo: install
	DEBUG=true $(PY) manage.py migrate --noinput
	DEBUG=true $(PY) manage.py seed_demo
	mkdir -p var && test -s $(KUBE_TOKEN) || $(PY) -c 'import secrets; print(secrets.token_urlsafe(32))' > $(KUBE_TOKEN)
	DEBUG=true $(PY) manage.py seed_services_demo --url http://127.0.0.1:$(KUBE_PORT) --token "$$(cat $(KUBE_TOKEN))"
	DEBUG=true $(PY) manage.py seed_status_demo
	DEBUG=true $(PY) manage.py register_portal_database
	@echo
	@echo "OpsPortal is starting at http://127.0.0.1:$(PORT)/  (web, worker, beat and the Kubernetes API emulator on port $(KUBE_PORT); Ctrl-C stops them all)"
	@echo
	DEBUG=true PORT=$(PORT) KUBE_PORT=$(KUBE_PORT) PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -f Procfile.demo

test: install
	scripts/test.sh

bench: install
	scripts/bench.sh

vendor:
	scripts/vendor_static.sh

clean:
	scripts/services.sh stop || true
	rm -rf var/staticfiles var/test-* var/screenshots
