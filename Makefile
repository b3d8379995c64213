# notify: build and test entry points. CI runs `make test` from .ci/run.
#
#   make build   release binaries in .build/release (Swift runtime linked statically)
#   make test    build, unit and integration tests (swift test), then the
#                end-to-end tests against .build/release: Postfix (tests/e2e),
#                nginx (tests/nginx) and Chromium (tests/browser); they need root
#   make run     run notify-relay from a release build; pass options in ARGS,
#                e.g. make run ARGS="--listen 127.0.0.1:8000 --domain example.com"

SWIFT ?= swift
PYTHON ?= /usr/bin/python3
BUILD_FLAGS = -c release --static-swift-stdlib
BIN_DIR = .build/release
ARGS ?=

.PHONY: build test unit-test e2e-test nginx-test browser-test assets-check test-deps run

build:
	$(SWIFT) build $(BUILD_FLAGS)

test: build assets-check unit-test e2e-test nginx-test browser-test

unit-test:
	$(SWIFT) test

# The relay embeds contrib/browser/; fails when the generated Swift file is stale.
assets-check:
	$(PYTHON) scripts/embed-assets.py --check

nginx-test: build test-deps
	$(PYTHON) tests/nginx/nginx_test.py --bin-dir $(BIN_DIR)

browser-test: build test-deps
	$(PYTHON) tests/browser/browser_test.py --bin-dir $(BIN_DIR)

# Installs Postfix and the other Debian packages the e2e tests use, when missing.
test-deps:
	scripts/install-test-deps.sh

# Runs every tests/e2e/*_e2e.py, even after one fails, and fails if any did.
e2e-test: build test-deps
	@status=0; \
	for test in tests/e2e/*_e2e.py; do \
		echo "== $$test"; \
		NOTIFY_BIN_DIR=$(BIN_DIR) $(PYTHON) $$test || status=1; \
	done; \
	exit $$status

run:
	$(SWIFT) run -c release notify-relay $(ARGS)
