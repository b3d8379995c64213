# notify: build and test entry points. CI runs `make test` from .ci/run.
#
#   make build   release binaries in .build/release (Swift runtime linked statically)
#   make test    build, unit and integration tests (swift test), then the
#                end-to-end tests against .build/release: Postfix (tests/e2e),
#                nginx (tests/nginx), Chromium (tests/browser) and systemd's
#                socket activation (tests/systemd); they need root
#   make run     run notify-relay from a release build; pass options in ARGS,
#                e.g. make run ARGS="--listen 127.0.0.1:8000 --domain example.com"
#   make install    build, then copy the binaries, man pages, README, docs/ and
#                   contrib/ under $(DESTDIR)$(PREFIX) (PREFIX default /usr/local)
#   make uninstall  remove the files that make install copies

SWIFT ?= swift
PYTHON ?= /usr/bin/python3
BUILD_FLAGS = -c release --static-swift-stdlib
BIN_DIR = .build/release
ARGS ?=

.PHONY: build test unit-test e2e-test nginx-test browser-test systemd-test install-test assets-check test-deps run

build:
	$(SWIFT) build $(BUILD_FLAGS)

test: build assets-check unit-test e2e-test nginx-test browser-test systemd-test install-test

unit-test:
	$(SWIFT) test

# The relay embeds contrib/browser/; fails when the generated Swift file is stale.
assets-check:
	$(PYTHON) scripts/embed-assets.py --check

nginx-test: build test-deps
	$(PYTHON) tests/nginx/nginx_test.py --bin-dir $(BIN_DIR)

browser-test: build test-deps
	$(PYTHON) tests/browser/browser_test.py --bin-dir $(BIN_DIR)

systemd-test: build test-deps
	$(PYTHON) tests/systemd/systemd_test.py --bin-dir $(BIN_DIR)

# Installs into a temporary DESTDIR and runs the installed binaries.
install-test: build
	$(PYTHON) tests/install/install_test.py

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

# Installation layout. DESTDIR is prepended to every path for staged installs
# (packages, tests); PREFIX is where the files will live at run time.
PREFIX ?= /usr/local
DESTDIR ?=
INSTALL ?= install
bindir = $(PREFIX)/bin
man8dir = $(PREFIX)/share/man/man8
# README.md, docs/ and contrib/ keep their paths relative to each other under
# docdir, so the links between them still work in the installed copy.
docdir = $(PREFIX)/share/doc/notify
PROGRAMS = notify-deliver notify-relay
MAN_PAGES = man/notify-deliver.8 man/notify-relay.8
DOC_FILES = README.md $(wildcard docs/*.md) $(shell find contrib -mindepth 2 -maxdepth 2 -type f | LC_ALL=C sort)
DOC_DIRS = $(sort $(patsubst %/,%,$(dir $(DOC_FILES))))

.PHONY: install uninstall

install: build
	$(INSTALL) -d $(DESTDIR)$(bindir) $(DESTDIR)$(man8dir)
	$(INSTALL) -m 0755 $(addprefix $(BIN_DIR)/,$(PROGRAMS)) $(DESTDIR)$(bindir)/
	$(INSTALL) -m 0644 $(MAN_PAGES) $(DESTDIR)$(man8dir)/
	@for file in $(DOC_FILES); do \
		echo "$(INSTALL) -D -m 0644 $$file $(DESTDIR)$(docdir)/$$file"; \
		$(INSTALL) -D -m 0644 "$$file" "$(DESTDIR)$(docdir)/$$file" || exit 1; \
	done

# Removes the files that install copies from this tree. A file deleted from the
# tree since the install is not removed. Shared directories (bin, man8) stay;
# the notify directories under docdir go once they are empty.
uninstall:
	rm -f $(addprefix $(DESTDIR)$(bindir)/,$(PROGRAMS))
	rm -f $(addprefix $(DESTDIR)$(man8dir)/,$(notdir $(MAN_PAGES)))
	rm -f $(addprefix $(DESTDIR)$(docdir)/,$(DOC_FILES))
	@for dir in $(addprefix $(DESTDIR)$(docdir)/,$(filter-out .,$(DOC_DIRS)) contrib) $(DESTDIR)$(docdir); do \
		if [ -d "$$dir" ]; then echo "rmdir $$dir"; rmdir --ignore-fail-on-non-empty "$$dir"; fi; \
	done
