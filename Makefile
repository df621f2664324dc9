# deliver: PGXS build
EXTENSION    = deliver
EXTVERSION   = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" deliver.control)
MODULE_big   = deliver
OBJS         = $(patsubst %.c,%.o,$(wildcard src/*.c))
PG_CONFIG   ?= pg_config

# The extension script is assembled from the parts in sql/, in this order:
# catalog.sql (schema and tables) only for CREATE EXTENSION, then the
# functions.  An upgrade script deliver--A--B.sql is sql/upgrade/A--B.sql
# (what changes in the tables, and dropping the functions of A) followed by
# the same function parts, so the functions are written once.
SQL_FUNCTIONS = messages helpers admin priorities expiry maintenance dead_letters archive metrics \
                alerts push flow routing inspect ack_commit privileges
SQL_SCRIPT    = sql/$(EXTENSION)--$(EXTVERSION).sql
SQL_UPGRADES  = $(patsubst sql/upgrade/%.sql,sql/$(EXTENSION)--%.sql,$(wildcard sql/upgrade/*.sql))
DATA          = sql/$(EXTENSION)--0.1.sql $(SQL_SCRIPT) $(SQL_UPGRADES)

PG_CPPFLAGS  = -I$(srcdir)/src/include -DDELIVER_VERSION='"$(EXTVERSION)"'
PG_CFLAGS    = -Wall -Wextra -Werror -Wno-unused-parameter -Wno-missing-field-initializers

REGRESS      = $(patsubst test/sql/%.sql,%,$(sort $(wildcard test/sql/*.sql)))
# pg_regress reads test/sql/*.sql and writes test/results/ (--outputdir),
# and finds the expected output in expected/ (--inputdir).
REGRESS_OPTS = --inputdir=. --outputdir=test --load-extension=deliver \
               --temp-config=$(srcdir)/test/deliver.conf
ISOLATION    = $(patsubst test/isolation/%.spec,%,$(sort $(wildcard test/isolation/*.spec)))
# pg_isolation_regress reads test/isolation/*.spec and test/isolation/expected/,
# and writes test/isolation/results/.
ISOLATION_OPTS = --inputdir=test/isolation --outputdir=test/isolation \
               --load-extension=deliver --temp-config=$(srcdir)/test/deliver.conf
TAP_TESTS    = 1

EXTRA_CLEAN  = bench/deliverbench bench/httpbench $(SQL_SCRIPT) $(SQL_UPGRADES)

# The programs below are built with the caller's CFLAGS, CPPFLAGS and
# LDFLAGS (a package build's dpkg-buildflags, say) or with their own
# defaults, never with the PGXS values the include sets (its warnings would
# meet their -Werror): the callers' values, taken before the include, are
# passed on, and make does not export its own.
PROGRAM_ENV := $(foreach v,CFLAGS CPPFLAGS LDFLAGS,$(if $(filter environment%,$(origin $(v))),$(v)='$($(v))'))

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
unexport CFLAGS CPPFLAGS LDFLAGS

# The programs in folders of their own, built, installed (next to the
# Postgres binaries) and cleaned with the extension: cli/ (the deliver
# client) and gateway/ (deliverd, the HTTP gateway).
PROGRAM_DIRS = cli gateway
all: $(PROGRAM_DIRS)
install: $(addprefix install-,$(PROGRAM_DIRS))
clean: $(addprefix clean-,$(PROGRAM_DIRS))
.PHONY: $(PROGRAM_DIRS) $(addprefix install-,$(PROGRAM_DIRS)) $(addprefix clean-,$(PROGRAM_DIRS))
$(PROGRAM_DIRS):
	env $(PROGRAM_ENV) $(MAKE) -C $@ PG_CONFIG=$(PG_CONFIG)
$(addprefix install-,$(PROGRAM_DIRS)): install-%: %
	env $(PROGRAM_ENV) $(MAKE) -C $* install PG_CONFIG=$(PG_CONFIG)
$(addprefix clean-,$(PROGRAM_DIRS)): clean-%:
	$(MAKE) -C $* clean PG_CONFIG=$(PG_CONFIG)

all: $(SQL_SCRIPT) $(SQL_UPGRADES)
$(SQL_SCRIPT): sql/catalog.sql $(SQL_FUNCTIONS:%=sql/%.sql) deliver.control Makefile
	{ echo '-- deliver $(EXTVERSION) (assembled from sql/*.sql by the Makefile)'; \
	  printf '%s\n' '\echo Use "CREATE EXTENSION $(EXTENSION)" to load this file. \quit'; \
	  for f in $(filter %.sql,$^); do echo; cat $$f; done; } > $@
sql/$(EXTENSION)--%.sql: sql/upgrade/%.sql $(SQL_FUNCTIONS:%=sql/%.sql) Makefile
	{ echo '-- deliver upgrade $* (assembled from sql/upgrade/$*.sql and sql/*.sql by the Makefile)'; \
	  printf '%s\n' '\echo Use "ALTER EXTENSION $(EXTENSION) UPDATE" to load this file. \quit'; \
	  for f in $(filter %.sql,$^); do echo; cat $$f; done; } > $@

# every object depends on the headers (src/include, one per module)
$(OBJS): $(wildcard src/include/*.h)

# pg_isolation_regress looks for specs in <inputdir>/specs/.
installcheck: test/isolation/specs
test/isolation/specs:
	ln -s . $@

# TAP tests live in test/t/ (PGXS looks in t/ by default).
PROVE_TESTS ?= test/t/*.pl

.PHONY: test run stop bench bench-quick bench-curves reliability
test:
	bash scripts/test
run:
	bash scripts/run
stop:
	bash scripts/run stop

# The long fault matrix, failover and hostile-input runs; rewrites the
# tables of docs/reliability.md (DELIVER_FAULT_RUNS, default 10).
reliability:
	bash scripts/test-faults

# The benchmark: deliver against the textbook queue and PgQ, one cluster,
# one run; writes bench/results/<stamp>.md and .png (see bench/README.md).
bench:
	bash bench/run.sh
bench-quick:
	bash bench/run.sh --quick
# Scale curves: cost along each axis, one short run per point (bench/curves.sh)
bench-curves:
	bash bench/curves.sh --axis all
