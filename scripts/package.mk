# Packaging rules, included by the Makefile: man pages, shell completion,
# units and docs for `make install`, and the Debian package (`make deb`).
# scripts/package/ holds their sources and the test that installs the
# package with dpkg in a clean root (go test ./scripts/package/).

# Read once, even when named twice (the Makefile includes this file, and
# `make deb` runs make again on every makefile read so far).
ifndef PKG_MK_INCLUDED
PKG_MK_INCLUDED := 1
PKG_MAKEFILES := $(MAKEFILE_LIST)

GO         ?= go
PREFIX     ?= /usr/local
DESTDIR    ?=

# The version as semver from the git tags (scripts/package/version.sh:
# 1.2.3 on tag v1.2.3, 0.0.0-dev.N+gHASH before the first tag), and as a
# Debian version (pre-release after "~", so that it sorts first).
PKG_VERSION     := $(shell sh scripts/package/version.sh)
PKG_DEBVERSION  := $(shell sh scripts/package/debversion.sh $(PKG_VERSION))
# The commit's date, not today's, so that the same commit builds the same
# man pages.
PKG_DATE        := $(shell git log -1 --format=%cs 2>/dev/null || date -u +%F)
PKG_ARCH        ?= $(shell $(GO) env GOARCH)
PKG_OUT         ?= out/package
PKG_DEB         ?= $(PKG_OUT)/ironblade_$(PKG_DEBVERSION)_$(PKG_ARCH).deb

MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/ironblade
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
# systemd reads units from /usr/local/lib/systemd/system as well as from
# /usr/lib and /lib, so units follow PREFIX; the package puts them in
# /lib/systemd/system as Debian 12's debhelper does.
UNITDIR    ?= $(PREFIX)/lib/systemd/system
# udev reads its rules, and runs relative PROGRAM= helpers, from here
# whatever the PREFIX.
UDEVDIR    ?= /usr/lib/udev

# Well-kept converters, pinned, run from the module cache.
MD2MAN     ?= $(GO) run github.com/cpuguy83/go-md2man/v2@v2.0.7
NFPM       ?= $(GO) run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

PKG_MANPAGES := $(PKG_OUT)/man/ironblade.8 $(PKG_OUT)/man/ironbladectl.8 $(PKG_OUT)/man/ironaoe.8 $(PKG_OUT)/man/ironblade.conf.5

.PHONY: man deb install-man install-completion install-units install-udev install-doc version

version:
	@echo $(PKG_VERSION)

# The man pages are docs/ironblade.md and docs/ironaoe.md, which read as
# Markdown on their own: their "# name(8)" line gives way to the title
# block go-md2man turns into .TH, with the version and date.
man: $(PKG_MANPAGES)

$(PKG_OUT)/man/%.8: docs/%.md scripts/package.mk
	@mkdir -p $(@D)
	{ printf '%% %s 8 "%s" "ironblade %s" "System Manager'\''s Manual"\n' \
		"$$(echo $* | tr a-z A-Z)" "$(PKG_DATE)" "$(PKG_VERSION)"; \
	  sed '1{/^# /d}' $<; } | $(MD2MAN) > $@.tmp
	mv $@.tmp $@

# The configuration file's page, ironblade.conf(5), the same way.
$(PKG_OUT)/man/%.5: docs/%.md scripts/package.mk
	@mkdir -p $(@D)
	{ printf '%% %s 5 "%s" "ironblade %s" "File Formats Manual"\n' \
		"$$(echo $* | tr a-z A-Z)" "$(PKG_DATE)" "$(PKG_VERSION)"; \
	  sed '1{/^# /d}' $<; } | $(MD2MAN) > $@.tmp
	mv $@.tmp $@

# make install (the Makefile's rule: binaries and OCF agents) installs
# these too.
install: install-man install-completion install-units install-udev install-doc

install-man: $(PKG_MANPAGES)
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	for page in $(PKG_MANPAGES); do \
		sec=man$${page##*.}; \
		gzip -9n < $$page > $(DESTDIR)$(MANDIR)/$$sec/$$(basename $$page).gz || exit 1; \
		chmod 644 $(DESTDIR)$(MANDIR)/$$sec/$$(basename $$page).gz; \
	done

# One script completes all three commands from their --help.
install-completion:
	install -d $(DESTDIR)$(BASHCOMPDIR)
	for cmd in ironblade ironaoe ironbench ironbladectl; do \
		install -m 644 scripts/package/completion.bash $(DESTDIR)$(BASHCOMPDIR)/$$cmd || exit 1; \
	done

# The units name /usr/local/sbin, make install's default; they are
# rewritten for PREFIX.
install-units:
	install -d $(DESTDIR)$(UNITDIR)
	for unit in scripts/systemd/*.service scripts/systemd/*.socket; do \
		sed 's|/usr/local/sbin/|$(PREFIX)/sbin/|g' $$unit > $(DESTDIR)$(UNITDIR)/$$(basename $$unit) || exit 1; \
		chmod 644 $(DESTDIR)$(UNITDIR)/$$(basename $$unit); \
	done

# The rule names attached devices /dev/aoe/eS.L (docs/ironaoe.md).
install-udev:
	install -d $(DESTDIR)$(UDEVDIR)/rules.d
	install -m 644 scripts/udev/60-ironaoe.rules $(DESTDIR)$(UDEVDIR)/rules.d/
	install -m 755 scripts/udev/ironaoe-udev-name $(DESTDIR)$(UDEVDIR)/

install-doc:
	install -d $(DESTDIR)$(DOCDIR)/examples
	install -m 644 README.md docs/*.md $(DESTDIR)$(DOCDIR)/
	install -m 644 scripts/systemd/example.conf $(DESTDIR)$(DOCDIR)/examples/ironblade-e1.0.conf

# deb stages `make install` for /usr (static, stripped binaries, version
# from the git tags; file times from the commit) and packs the tree with nfpm (scripts/package/nfpm.yaml).
PKG_STAGE := $(PKG_OUT)/stage
deb:
	rm -rf $(PKG_STAGE)
	CGO_ENABLED=0 $(MAKE) --no-print-directory $(addprefix -f ,$(PKG_MAKEFILES)) install DESTDIR=$(abspath $(PKG_STAGE)) \
		PREFIX=/usr UNITDIR=/lib/systemd/system BIN=$(PKG_OUT)/bin \
		LDFLAGS='-s -w -X main.version=$(PKG_VERSION)'
	install -m 644 LICENSE $(PKG_STAGE)/usr/share/doc/ironblade/copyright
	sed -e 's|@PKG_STAGE@|$(abspath $(PKG_STAGE))|' -e 's|@PKG_ARCH@|$(PKG_ARCH)|' \
		-e 's|@PKG_DEBVERSION@|$(PKG_DEBVERSION)|' scripts/package/nfpm.yaml > $(PKG_OUT)/nfpm.yaml
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || date +%s) \
		$(NFPM) package --config $(PKG_OUT)/nfpm.yaml --packager deb --target $(PKG_DEB)
	@echo "built $(PKG_DEB)"

endif
