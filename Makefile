# pooldiag: PGXS build.  See README.md for how to build, install and test.

MODULE_big = pooldiag
OBJS = \
	src/pooldiag.o \
	src/registry.o \
	src/hooks.o \
	src/event_ring.o \
	src/worker.o \
	src/writer.o \
	src/flush.o \
	src/policy.o \
	src/views.o \
	src/sanitize.o \
	src/fold.o \
	src/declared.o \
	src/pools.o \
	src/capacity.o

EXTENSION = pooldiag
DATA = pooldiag--1.0.sql pooldiag--1.1.sql pooldiag--1.0--1.1.sql \
	pooldiag--1.1--1.2.sql pooldiag--1.2--1.3.sql
PGFILEDESC = "pooldiag - connection hygiene for pooled applications"

# pg_regress runs against a private cluster that preloads pooldiag.
REGRESS = setup sessions guc privileges events policy pools versions capacity recommend comments
REGRESS_OPTS = --temp-config=$(CURDIR)/test/regress.conf --temp-instance=./tmp_check

TAP_TESTS = 1

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
