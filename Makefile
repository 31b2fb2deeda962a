# The two commands of the README: `make run` and `make test`. Everything they need is installed
# by the targets below, so a fresh clone needs nothing else.
# The checkout may be anywhere (root's 0700 home, a mktemp -d, a path with spaces): as root,
# jupybot shows its sandbox users what they need of it (docs/terminal.md, "Containment"), and
# scripts/check-checkout says, before `run` and `test` start, what would keep it from serving.
# The virtualenv's Python also runs the embedded gateway's kernels as the sandbox user: the
# system's Python where there is one.
PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
SYNAPSE_VENV := .cache/synapse-venv
SYNAPSE_PIN := matrix-synapse==1.163.2
# Jupyter Enterprise Gateway, a kernel-test peer: its own venv, as it caps jupyter_client (< 7)
# and jupyter_server (< 2); ipykernel 7 leaves its kernels never idle, hence 6.
EG_VENV := .cache/enterprise-gateway-venv
EG_PINS := jupyter-enterprise-gateway==3.3.0 ipykernel==6.29.5

.PHONY: run test check checkout bytecode lint typecheck unit setup clean

setup: $(INSTALLED)

$(INSTALLED): setup.py pyproject.toml $(wildcard package.json package-lock.json)
	scripts/install-system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# compat mode puts the checkout on sys.path, so twisted/plugins/ here is seen by twistd
	$(BIN)/pip install --quiet -e '.[test,kernel]' --config-settings editable_mode=compat
	scripts/install-web-assets
	# Refresh Twisted's plugin cache now rather than on the first twistd start.
	$(BIN)/python -c 'from twisted.plugin import IPlugin, getPlugins; list(getPlugins(IPlugin))'
	touch $@

$(SYNAPSE_VENV)/.installed:
	$(PYTHON) -m venv $(SYNAPSE_VENV)
	$(SYNAPSE_VENV)/bin/pip install --quiet --upgrade pip
	$(SYNAPSE_VENV)/bin/pip install --quiet '$(SYNAPSE_PIN)'
	touch $@

# The Element test peer (tests/peers/element): matrix-js-sdk and the Node 22 that runs it (npm
# comes with the system packages, hence after $(INSTALLED)).
ELEMENT_PEER := tests/peers/element/node_modules/.installed

$(ELEMENT_PEER): tests/peers/element/package.json tests/peers/element/package-lock.json | $(INSTALLED)
	scripts/install-element-peer
	touch $@

$(EG_VENV)/.installed:
	$(PYTHON) -m venv $(EG_VENV)
	$(EG_VENV)/bin/pip install --quiet --upgrade pip
	$(EG_VENV)/bin/pip install --quiet $(EG_PINS)
	touch $@

run: $(INSTALLED) checkout bytecode
	$(BIN)/twistd -n jupybot --config config.yml

# What would keep this checkout from serving where it is (as root), said with the fix.
checkout: $(INSTALLED)
	scripts/check-checkout $(VENV)

# jupybot's Python caches, readable by the sandbox user that runs the embedded gateway (which
# imports jupybot) as root, whatever umask made them: scripts/compile-bytecode says why.
bytecode: $(INSTALLED)
	scripts/compile-bytecode $(BIN)/python jupybot

# eslint (eslint.config.js) for the browser terminal's JavaScript, installed by install-web-assets.
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	node_modules/.bin/eslint .

typecheck: $(INSTALLED)
	$(BIN)/mypy

# (Quoted, and not $(abspath): the checkout's path may hold spaces.)
# The front end's unit tests (tests/js/, node's own runner) first: they take a second.
test: $(INSTALLED) checkout bytecode $(SYNAPSE_VENV)/.installed $(EG_VENV)/.installed $(ELEMENT_PEER) lint typecheck
	node --test tests/js/
	JUPYBOT_SYNAPSE_PYTHON="$(CURDIR)/$(SYNAPSE_VENV)/bin/python" \
	JUPYBOT_ENTERPRISE_GATEWAY_PYTHON="$(CURDIR)/$(EG_VENV)/bin/python" \
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .cache build *.egg-info node_modules tests/peers/element/node_modules
