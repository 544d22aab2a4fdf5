# namegate: `make demo` runs the lab with the example policies; `make test` runs every test.
# Both install what is missing first (Debian packages, npm packages, test binaries).
SHELL := /bin/bash
NODE := node_modules/node/bin/node
NPX := PATH="$(CURDIR)/node_modules/.bin:$$PATH"
ARGS ?=

.PHONY: all deps demo test lint imports typecheck unit integration k8s cluster image bench format soak-test

all: test

deps:
	@scripts/deps.sh

demo: deps
	@scripts/demo.sh $(ARGS)

test: deps
	@scripts/deps.sh --test
	@$(MAKE) --no-print-directory lint imports typecheck unit integration k8s cluster

lint:
	@echo "== lint (biome)"
	@$(NPX) biome ci --reporter=summary .

# The import rules of src/ (.dependency-cruiser.cjs, explained in docs/architecture.md); a
# forbidden import fails with the name of the rule it breaks.
imports:
	@echo "== import rules (dependency-cruiser)"
	@$(NODE) node_modules/dependency-cruiser/bin/dependency-cruiser.mjs src --config .dependency-cruiser.cjs --output-type err-long

typecheck:
	@echo "== typecheck (tsc --noEmit)"
	@$(NPX) tsc --noEmit -p .
	@$(NPX) tsc --noEmit -p web/dashboard

unit:
	@echo "== unit and property tests"
	@$(NODE) --test --test-reporter=dot 'test/unit/**/*.test.ts'

integration:
	@echo "== integration tests (root, network namespaces, real peers)"
	@if compgen -G 'test/integration/**/*.test.ts' >/dev/null || compgen -G 'test/integration/*.test.ts' >/dev/null; then \
	  $(NODE) --test --test-concurrency=1 --test-reporter=spec 'test/integration/**/*.test.ts'; \
	else echo "(none yet)"; fi

k8s:
	@echo "== kubernetes tests (real kube-apiserver and etcd)"
	@if compgen -G 'test/k8s/*.test.ts' >/dev/null; then \
	  $(NODE) --test --test-concurrency=1 --test-reporter=spec 'test/k8s/**/*.test.ts'; \
	else echo "(none yet)"; fi

cluster:
	@echo "== tests on a real Kubernetes node (kubelet, containerd, helm install of the image)"
	@$(NODE) --test --test-concurrency=1 --test-reporter=spec 'test/image/*.test.ts' 'test/cluster/*.test.ts'

# The integration and Kubernetes suites SOAK_ROUNDS times (default 5) under stress-ng on every
# core, CI=true; zero failures or it fails. SOAK_FILES narrows it (docs/testing.md).
soak-test: deps
	@scripts/deps.sh --test
	@scripts/soak.sh

# The OCI archives under build/image (namegate, and pause, CoreDNS, test-client for the lab).
image: deps
	@scripts/build-test-bins.sh pause coredns >/dev/null
	@$(NODE) scripts/image/build.ts

bench: deps
	@scripts/build-test-bins.sh coredns >/dev/null
	@for b in bench/*/main.ts; do echo "== $$b"; $(NODE) --expose-gc $$b || exit 1; done

format:
	@$(NPX) biome format --write .
