# Spanza: `make demo` and `make test` install what is missing, build, run.
SHELL := /bin/bash
# Compile on every core; recipes that must not overlap are ordered by
# their prerequisites.
MAKEFLAGS += -j$(shell nproc)
VENV := .venv
PY := $(VENV)/bin/python
DEPS_STAMP := $(VENV)/.deps-stamp
# Where objects, archives and caches go (pip builds set them into its build
# directory: nothing is written to the source tree). NO_DEPS=1 skips the
# set-up (scripts/install-deps.sh: apt, .venv) that `make demo`/`make test` do.
BUILD_DIR ?= build
CACHE_DIR ?= .cache
DEPS := $(if $(NO_DEPS),,$(DEPS_STAMP))

CC ?= cc
CSTD := -std=c11 -D_GNU_SOURCE
WARN := -Wall -Wextra -Werror -Wshadow -Wmissing-prototypes
BASE_CFLAGS := $(CSTD) $(WARN) -fPIC -fvisibility=hidden -Icsrc -MMD -MP
CSRCS := $(shell find csrc -name '*.c' | sort)

# Flavours: release (default) and sanitize (ASan + UBSan).
release_CFLAGS := -O2 -g
sanitize_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined

.PHONY: all deps lib ext test test-slow test-fast asan fuzz demo bench clean distclean

# Modules add to these in mk/*.mk: EXTRA_OBJS_<flavour> (objects for the
# archive, e.g. lwIP), TEST_DEPS (things the suite needs built first, e.g.
# Go helpers), FUZZ_TARGETS (names of tests/fuzz/<name>.c libFuzzer targets).
EXTRA_OBJS_release :=
EXTRA_OBJS_sanitize :=
TEST_DEPS :=
FUZZ_TARGETS :=
-include $(sort $(wildcard mk/*.mk))

all: ext

$(DEPS_STAMP): scripts/install-deps.sh requirements-dev.txt
	bash scripts/install-deps.sh
	touch $@

deps: $(DEPS_STAMP)

# ---- C library, one archive per flavour ----
define flavour
$(BUILD_DIR)/$(1)/obj/%.o: %.c | $(DEPS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(BASE_CFLAGS) $$($(1)_CFLAGS) $$(EXTRA_CFLAGS) -c $$< -o $$@

$(BUILD_DIR)/$(1)/libspanza.a: $$(patsubst %.c,$(BUILD_DIR)/$(1)/obj/%.o,$$(CSRCS)) $$(EXTRA_OBJS_$(1))
	@rm -f $$@
	ar rcs $$@ $$^

-include $$(patsubst %.c,$(BUILD_DIR)/$(1)/obj/%.d,$$(CSRCS))
endef
$(eval $(call flavour,release))
$(eval $(call flavour,sanitize))
# (UBSan does not recover: undefined behaviour is a crash with a reproducer,
# not a line lost in the log.)
fuzzlib_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined
$(BUILD_DIR)/fuzzlib/obj/%.o: CC := clang
$(eval $(call flavour,fuzzlib))

lib: $(BUILD_DIR)/release/libspanza.a

PYHDRS := $(shell find csrc -name '*_py.h' | sort)
EXT_STAMP := $(BUILD_DIR)/release/.ext-stamp
# The editable install is a path in a .pth file (editable_mode=compat):
# setuptools' default import-hook finder costs every interpreter start
# ~10 ms (pathlib, importlib.util, fnmatch), which a wheel install does not.
# It is made again when pyproject.toml changes (the `spanza` command, the
# pytest plugin's entry point).
$(EXT_STAMP): $(BUILD_DIR)/release/libspanza.a $(PYHDRS) spanza/_build.py pyproject.toml | $(DEPS)
	SPANZA_LIBDIR=$(BUILD_DIR)/release $(PY) spanza/_build.py $(BUILD_DIR)/release/cffi
	cp $(BUILD_DIR)/release/cffi/spanza/_spanza*.so spanza/
	@test $(VENV)/.editable-path -nt pyproject.toml || { SPANZA_SKIP_MAKE=1 $(PY) -m pip install -q --no-deps --no-build-isolation \
	  --config-settings editable_mode=compat -e . && touch $(VENV)/.editable-path; }
	touch $@

ext: $(EXT_STAMP)

# ---- tests: `make test` also runs `make lint` (a few seconds) ----
PYTEST_ARGS ?=
test: ext $(TEST_DEPS) fuzz-smoke lint
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The long transfers (32 MiB under impairments, the packaging round trip):
# a soak of their own, outside CI's `make test`.
test-slow: ext $(TEST_DEPS)
	$(PY) -m pytest -q -m slow $(PYTEST_ARGS)

test-fast: ext $(TEST_DEPS)
	$(PY) -m pytest -q -m "not slow and not interop" $(PYTEST_ARGS)

# The same suite against an ASan+UBSan build of the extension, in its own tree.
ASAN_TREE := $(BUILD_DIR)/sanitize/tree
asan: $(BUILD_DIR)/sanitize/libspanza.a $(TEST_DEPS)
	@rm -rf $(ASAN_TREE) && mkdir -p $(ASAN_TREE)
	cp -r spanza bin tests examples conftest.py pyproject.toml $(ASAN_TREE)/
	rm -f $(ASAN_TREE)/spanza/_spanza*.so
	SPANZA_SANITIZE=1 SPANZA_LIBDIR=$(BUILD_DIR)/sanitize $(PY) spanza/_build.py $(BUILD_DIR)/sanitize/cffi
	cp $(BUILD_DIR)/sanitize/cffi/spanza/_spanza*.so $(ASAN_TREE)/spanza/
	cd $(ASAN_TREE) && \
	  LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  PYTHONPATH=. SPANZA_SANITIZED=1 SPANZA_ROOT=$(CURDIR) $(abspath $(PY)) -m pytest -q -p no:cacheprovider -m "not slow" $(PYTEST_ARGS)

# ---- fuzzing: libFuzzer targets in tests/fuzz/<name>.c, linked with the ASan archive ----
# (WARN without -Wmissing-prototypes: LLVMFuzzerTestOneInput is libFuzzer's
# entry point, which no header declares.)
# A module may add link flags for one target in FUZZ_LDFLAGS_<name>.
FUZZ_CFLAGS := $(CSTD) -Wall -Wextra -Werror -Wshadow -g -O1 -Icsrc -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined
FUZZ_BINS := $(patsubst %,$(BUILD_DIR)/fuzz/%,$(FUZZ_TARGETS))
$(BUILD_DIR)/fuzz/%: tests/fuzz/%.c $(wildcard tests/fuzz/*.h) $(BUILD_DIR)/fuzzlib/libspanza.a
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $< $(BUILD_DIR)/fuzzlib/libspanza.a $(FUZZ_LDFLAGS_$*) -lssl -lcrypto -lsodium -lpthread -o $@
# Helpers a target links that are not the code under test (a module adds
# them to its FUZZ_LDFLAGS_<name>): optimised, uninstrumented.
$(BUILD_DIR)/fuzz/%.o: tests/fuzz/%.c $(wildcard tests/fuzz/*.h)
	@mkdir -p $(dir $@)
	clang $(CSTD) -Wall -Wextra -Werror -O3 -c $< -o $@
FUZZ_SECONDS ?= 300
# FUZZ_RUNS: stop a target after this many executions (-1: no limit).
FUZZ_RUNS ?= -1
# The full run: FUZZ_SECONDS (or FUZZ_RUNS) per target, corpora kept under
# $(CACHE_DIR)/fuzz, one target after another (each on one core, at
# FUZZ_NICE). Each target's output goes to $(BUILD_DIR)/fuzz/<name>.log as
# well, a crash's reproducer to $(BUILD_DIR)/fuzz/<name>-crash-*; a crash
# does not stop the run: the table at the end (scripts/fuzz-summary.py, also
# in $(BUILD_DIR)/fuzz/summary.txt) shows every target's executions,
# exec/s, coverage and crashes, and `make fuzz` fails if any crashed.
FUZZ_NICE ?= nice -n 5
fuzz: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do mkdir -p $(CACHE_DIR)/fuzz/$$t; rm -f $(BUILD_DIR)/fuzz/$$t.rc; done; \
	for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $$t for $(FUZZ_SECONDS)s (runs: $(FUZZ_RUNS))"; \
	  $(FUZZ_NICE) $(BUILD_DIR)/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -runs=$(FUZZ_RUNS) -print_final_stats=1 \
	    -artifact_prefix=$(BUILD_DIR)/fuzz/$$t- $(CACHE_DIR)/fuzz/$$t tests/fuzz/corpus/$$t 2>&1 | tee $(BUILD_DIR)/fuzz/$$t.log; \
	  echo $${PIPESTATUS[0]} >$(BUILD_DIR)/fuzz/$$t.rc; done; \
	$(PY) scripts/fuzz-summary.py $(BUILD_DIR)/fuzz $(FUZZ_TARGETS)
# The short run that `make test` includes.
fuzz-smoke: $(FUZZ_BINS)
	@for t in $(FUZZ_TARGETS); do mkdir -p $(CACHE_DIR)/fuzz/$$t; \
	  $(BUILD_DIR)/fuzz/$$t -max_total_time=$${FUZZ_SMOKE_SECONDS:-10} $(CACHE_DIR)/fuzz/$$t tests/fuzz/corpus/$$t >$(BUILD_DIR)/fuzz/$$t.log 2>&1 \
	  || { tail -40 $(BUILD_DIR)/fuzz/$$t.log; exit 1; }; echo "fuzz-smoke $$t: ok ($$(grep -o 'Done [0-9]* runs' $(BUILD_DIR)/fuzz/$$t.log))"; done

# ---- lint: C style (clang-format), C checks (clang-tidy, .clang-tidy),
# Python (ruff, mypy --strict), and what the extension exports ----
LINT_C := $(shell find csrc tests/fuzz bench -name '*.[ch]' | sort)
TIDY_FLAGS := $(CSTD) -Icsrc $(LWIP_INC)
PY_LINT := spanza tests bench examples conftest.py setup.py
.PHONY: lint format
lint: ext
	clang-format --dry-run -Werror $(LINT_C)
	printf '%s\n' $(CSRCS) | xargs -P$$(nproc) -n8 clang-tidy -quiet $(foreach f,$(TIDY_FLAGS),--extra-arg=$(f))
	$(PY) -m ruff check $(PY_LINT)
	$(PY) -m ruff format --check $(PY_LINT)
	$(PY) -m mypy --strict spanza
	$(PY) scripts/check-build.py $(BUILD_DIR)/release/libspanza.a $(BUILD_DIR)/release/cffi/spanza/_spanza*.so

format:
	clang-format -i $(LINT_C)
	$(PY) -m ruff format $(PY_LINT)

demo: ext
	$(PY) -m spanza demo

bench: ext go-helpers goref
	$(PY) bench/run.py

clean:
	rm -rf $(BUILD_DIR) spanza/_spanza*.so

distclean: clean
	rm -rf $(VENV) $(CACHE_DIR)
