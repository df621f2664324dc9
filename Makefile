# deliver: PGXS build
EXTENSION    = deliver
MODULE_big   = deliver
OBJS         = $(patsubst %.c,%.o,$(wildcard src/*.c))
DATA         = $(wildcard sql/deliver--*.sql)
PG_CONFIG   ?= pg_config

PG_CPPFLAGS  = -I$(srcdir)/src
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

EXTRA_CLEAN  = bench/deliverbench bench/httpbench

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# The programs in folders of their own, built, installed (next to the
# Postgres binaries) and cleaned with the extension: cli/ (the deliver
# client) and gateway/ (deliverd, the HTTP gateway).
PROGRAM_DIRS = cli gateway
all: $(PROGRAM_DIRS)
install: $(addprefix install-,$(PROGRAM_DIRS))
clean: $(addprefix clean-,$(PROGRAM_DIRS))
.PHONY: $(PROGRAM_DIRS) $(addprefix install-,$(PROGRAM_DIRS)) $(addprefix clean-,$(PROGRAM_DIRS))
$(PROGRAM_DIRS):
	$(MAKE) -C $@ PG_CONFIG=$(PG_CONFIG)
$(addprefix install-,$(PROGRAM_DIRS)): install-%: %
	$(MAKE) -C $* install PG_CONFIG=$(PG_CONFIG)
$(addprefix clean-,$(PROGRAM_DIRS)): clean-%:
	$(MAKE) -C $* clean PG_CONFIG=$(PG_CONFIG)

# every object depends on the shared header
$(OBJS): src/deliver.h

# pg_isolation_regress looks for specs in <inputdir>/specs/.
installcheck: test/isolation/specs
test/isolation/specs:
	ln -s . $@

# TAP tests live in test/t/ (PGXS looks in t/ by default).
PROVE_TESTS ?= test/t/*.pl

.PHONY: test run stop bench bench-quick reliability
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
