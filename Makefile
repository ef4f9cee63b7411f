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

.PHONY: help setup deps venv libvirt image collection test unit integration sanity lint demo bench docs build clean

help:
	@echo "make demo   - provision a guest on this host (qemu:///system) with the collection, show it, remove it"
	@echo "make test   - set up everything (packages, venv, libvirtd, test image) and run all tests"
	@echo "make unit | integration | sanity | lint | build | bench | docs"

setup: deps venv libvirt image collection

deps:
	@bash $(ROOT)/scripts/install-deps.sh

venv: $(VENV)/.installed
$(VENV)/.installed: $(ROOT)/requirements.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -U pip wheel
	$(PY) -m pip install -q -r $(ROOT)/requirements.txt
	@touch $@

libvirt:
	@bash $(ROOT)/scripts/setup-libvirt.sh

image:
	@bash $(ROOT)/scripts/build-test-image.sh $(CACHE)/image
	@bash $(ROOT)/scripts/install-test-image.sh $(CACHE)/image

collection:
	@mkdir -p $(COLL_ROOT)/ansible_collections/virtops
	@ln -sfn $(ROOT) $(COLL_ROOT)/ansible_collections/virtops/libvirt

unit: collection
	$(PY) -m pytest -p no:cacheprovider tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest -p no:cacheprovider tests/integration $(PYTEST_ARGS)

test: setup
	@bash $(ROOT)/scripts/run-tests.sh

demo: setup
	cd $(ROOT) && $(VENV)/bin/ansible-playbook -i localhost, -c local -e ansible_python_interpreter=$(PY) \
	  playbooks/demo.yml $(DEMO_ARGS)

build: collection
	cd $(ROOT) && $(VENV)/bin/ansible-galaxy collection build --force --output-path build/

clean:
	rm -rf $(ROOT)/build $(COLL_ROOT)
