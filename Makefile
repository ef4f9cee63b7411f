# virtops.libvirt — the two commands users run are `make demo` and `make test`.
# Everything they need (apt packages, the venv, libvirtd, the test guest image) is set up here.
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT        := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
CACHE       ?= $(HOME)/.cache/virtops-libvirt
REQ_HASH    := $(shell cat $(ROOT)/requirements.txt | sha256sum | cut -c1-12)
VENV        ?= $(CACHE)/venv-$(REQ_HASH)
PY          := $(VENV)/bin/python
# The collection is used through a symlink ansible_collections/virtops/libvirt -> this checkout,
# kept outside the tree so nothing walking the tree loops.
COLL_ROOT   := $(CACHE)/collections/$(shell printf %s '$(ROOT)' | sha256sum | cut -c1-10)
export VIRTOPS_COLLECTIONS := $(COLL_ROOT)
export ANSIBLE_COLLECTIONS_PATH := $(COLL_ROOT)
export VIRTOPS_VENV := $(VENV)
export VIRTOPS_CACHE := $(CACHE)
export PATH := $(VENV)/bin:$(PATH)
PYTEST_ARGS ?=
# where `make docs` puts the HTML site (outside the tree: `ansible-galaxy collection build` must not ship it)
DOCS_DEST   ?= $(CACHE)/docs/$(shell printf %s '$(ROOT)' | sha256sum | cut -c1-10)
# what `make lint` runs ansible-lint on: the playbooks and roles that exist
LINT_PATHS  := $(patsubst $(ROOT)/%,%,$(wildcard $(ROOT)/playbooks $(ROOT)/roles/*/))

.PHONY: help setup deps eco-deps venv libvirt image collection test unit integration sanity lint ruff \
        ansible-lint molecule demo bench docs changelog ee build clean

help:
	@echo "make demo   - provision a guest on this host (qemu:///system) with the collection, show it, remove it"
	@echo "make test   - set up everything (packages, venv, libvirtd, test image) and run all tests"
	@echo "make unit | integration | sanity | lint | build | bench | docs | changelog | ee"

setup: deps eco-deps venv libvirt image collection

deps:
	@bash $(ROOT)/scripts/install-deps.sh

# Debian packages of the ecosystem checks (headless Chromium for the docs check)
eco-deps:
	@bash $(ROOT)/scripts/install-ecosystem-deps.sh

venv: $(VENV)/.installed $(VENV)/.installed-ecosystem
$(VENV)/.installed: $(ROOT)/requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel
	$(PY) -m pip install -q -r $(ROOT)/requirements.txt
	@touch $@
# docs, changelog, execution-environment and shellcheck tooling, kept apart from requirements.txt
# (whose hash names the venv) so that adding a tool does not rebuild the venv and libvirt-python
$(VENV)/.installed-ecosystem: $(VENV)/.installed $(ROOT)/requirements-ecosystem.txt
	$(PY) -m pip install -q -r $(ROOT)/requirements-ecosystem.txt
	@touch $@

libvirt:
	@bash $(ROOT)/scripts/setup-libvirt.sh

# the tiny busybox test guest, and the real Debian cloud image with cloud-init (mmdebstrap, ~1 min
# once; both cached by a key of package versions + builder script, a re-run is a ~1 s no-op)
image:
	@bash $(ROOT)/scripts/build-test-image.sh $(CACHE)/image
	@bash $(ROOT)/scripts/install-test-image.sh $(CACHE)/image
	@bash $(ROOT)/scripts/build-cloud-image.sh $(CACHE)/cloud-image
	@bash $(ROOT)/scripts/install-cloud-image.sh $(CACHE)/cloud-image >/dev/null

collection:
	@mkdir -p $(COLL_ROOT)/ansible_collections/virtops
	@ln -sfn $(ROOT) $(COLL_ROOT)/ansible_collections/virtops/libvirt

unit: collection
	$(PY) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test: setup
	@bash $(ROOT)/scripts/run-tests.sh

# the roles' molecule scenarios (delegated driver, this machine's libvirtd): converge, idempotence,
# verify, destroy. Object names start with $(MOLECULE_PREFIX); one run per scenario at a time (flock,
# the same lock tests/integration/test_roles.py takes).
MOLECULE_PREFIX ?= vmol-
molecule: setup
	@set -e; for role in kvm_host kvm_guest; do \
	  echo "=== molecule: $$role"; \
	  (cd $(ROOT)/roles/$$role && VIRTOPS_MOLECULE_PREFIX=$(MOLECULE_PREFIX) \
	    flock /run/lock/virtops-molecule-$$role.lock $(VENV)/bin/molecule test); \
	done

# ansible-test sanity from a copy of the tree in $(CACHE)/sanity/<checkout hash>/ansible_collections/virtops/libvirt,
# with an offline get-pip stand-in; per-test virtualenvs are cached by ansible-test (scripts/sanity.sh)
sanity: venv collection
	@bash $(ROOT)/scripts/sanity.sh $(SANITY_ARGS)

lint: ruff ansible-lint

ruff: venv
	@cd $(ROOT) && rc=0; \
	  $(VENV)/bin/ruff check plugins tests scripts || rc=1; \
	  $(VENV)/bin/ruff format --check plugins tests scripts || rc=1; \
	  exit $$rc

# production profile, on the playbooks and roles that exist
ansible-lint: venv collection
	cd $(ROOT) && $(VENV)/bin/ansible-lint --profile production $(LINT_PATHS)

# HTML docs (antsibull-docs + Sphinx), site in $(DOCS_DEST)/build/html/index.html
docs: venv collection
	@bash $(ROOT)/scripts/build-docs.sh $(DOCS_DEST)

# lint the changelog fragments, then (re)generate changelogs/changelog.yaml and CHANGELOG.md for the
# version in galaxy.yml
changelog: venv collection
	@bash $(ROOT)/scripts/changelog.sh

# execution environment: build context in build/ee/context (and the image, where podman/docker works)
ee: venv
	@bash $(ROOT)/scripts/ee.sh $(ROOT)/build/ee

demo: setup
	cd $(ROOT) && $(VENV)/bin/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$(PY) \
	  playbooks/demo.yml $(DEMO_ARGS)

# benchmark suite (not part of `make test`): P1-P5 side by side with the Ansible floor and
# community.libvirt, from its own venv (bench/requirements.txt: the `ansible` package brings
# community.libvirt); writes docs/performance.md + docs/performance-p2.png (30-60 min: ~7,000 task items).
# `make bench BENCH_QUICK=1`: fast smoke, report in bench/results/. BENCH_ARGS: e.g. --parts P1,P3
BENCH_VENV  ?= $(CACHE)/bench-venv
BENCH_ARGS  ?=
$(BENCH_VENV)/.installed: $(ROOT)/bench/requirements.txt
	@test -x $(BENCH_VENV)/bin/python || python3 -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install -q -U pip wheel
	$(BENCH_VENV)/bin/python -m pip install -q -r $(ROOT)/bench/requirements.txt
	@touch $@

bench: setup $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python $(ROOT)/bench/run.py $(if $(BENCH_QUICK),--quick) $(BENCH_ARGS)

build: collection
	cd $(ROOT) && $(VENV)/bin/ansible-galaxy collection build --force --output-path build/

clean:
	rm -rf $(ROOT)/build $(COLL_ROOT)
