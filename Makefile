# carteiro: `make serve` runs the mail system, `make test` runs every check. See README.md.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= var
DOMAIN ?= example.test
# Debian packages the end-to-end tests drive (real clients).
APT_TEST_PACKAGES := swaks curl msmtp mpop imapfilter mutt tmux libnet-ssleay-perl libauthen-sasl-perl isync fetchmail getmail6 offlineimap3 s-nail git-email libmailtools-perl postfix dovecot-imapd dovecot-pop3d dovecot-managesieved dovecot-sieve sieve-connect chromium

.PHONY: serve test install install-test apt-test lint unit clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.installed-test: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/.installed

serve: $(BIN)/.installed
	@test -f $(DATA)/carteiro.toml || $(BIN)/carteiro init --data $(DATA) --domain $(DOMAIN) --demo
	$(BIN)/carteiro serve --data $(DATA)

apt-test:
	@missing=""; for p in $(APT_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=900 update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=900 install -y -q --no-install-recommends $$missing; \
	fi

install-test: $(BIN)/.installed-test apt-test

lint: $(BIN)/.installed-test
	$(BIN)/ruff check carteiro tests bench
	$(BIN)/ruff format --check carteiro tests bench
	$(BIN)/mypy carteiro
	$(BIN)/lint-imports

test: install-test lint
	$(BIN)/pytest -n 2 --dist loadgroup -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
