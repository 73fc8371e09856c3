# bootflow.cloud — the two commands of README.md, plus their parts.
#   make demo   set up this machine, start one test hypervisor host, boot a VM with the embedded
#               defaults (local identity, SQLite) and show it
#   make test   set up this machine, then run every test (unit, sanity, lint, integration, molecule)
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
REPO := $(CURDIR)
export PATH := $(REPO)/.venv/bin:$(PATH)
export ANSIBLE_CONFIG := $(REPO)/ansible.cfg
DEMO_HOST ?= 1

.PHONY: setup demo demo-delete test unit sanity lint integration molecule hosts-stop clean

setup:
	@bash scripts/setup.sh
	@mkdir -p build/collections/ansible_collections/bootflow
	@ln -sfn ../../../.. build/collections/ansible_collections/bootflow/cloud

demo: setup
	@bash scripts/demo.sh $(DEMO_HOST)

demo-delete:
	ansible-playbook -i build/inventory.ini playbooks/delete.yml -e bootflow_instance_name=$${BOOTFLOW_DEMO_NAME:-demo}

test: setup
	@bash scripts/test.sh

unit:
	python -m pytest -q tests/unit

sanity:
	@bash scripts/sanity.sh

lint:
	ansible-lint --profile production

integration:
	python -m pytest -q tests/integration

molecule:
	molecule test --all

hosts-stop:
	@for n in $$(ls /run/netns 2>/dev/null | sed -n 's/^bfhv//p'); do tests/hosts/testhost.sh stop $$n; done

clean: hosts-stop
	rm -rf build tests/output
