# amk-verify: one flat Makefile for every part. Outputs go to build/.
# Parts: base/ (strings, files, clock, parsers, options, shared limits), ir/ (IR + JSON), lower/, verify/ (the only part that links Z3), refvm/, bench/,
# lint/ (kernel-artifact checks), search/ (the schedule search loop), megakernel/ (CUDA, only when
# nvcc is present), tools/ (the amk CLI front end).

CC       ?= gcc
CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Werror -Wno-unused-parameter
OPT      ?= -O2 -g
CFLAGS   += $(CSTD) $(WARN) $(OPT) -fPIC -I. -MMD -MP
LDLIBS   := -lcjson -lz3 -lz -lm -lpthread
BUILD    ?= build

# CUDA: when nvcc is found, megakernel/*.cu joins the library, AMK_HAVE_CUDA is defined and the
# binaries link the static CUDA runtime (they start on machines without a GPU driver too).
NVCC     ?= $(shell command -v nvcc 2>/dev/null || ls /usr/local/cuda/bin/nvcc 2>/dev/null)
ifneq ($(strip $(NVCC)),)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(realpath $(NVCC)))
NVCCFLAGS ?= -O3 -std=c++17 -I. -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 \
             -Xcompiler -Wall,-Wextra,-Werror,-fPIC -Xptxas -warn-spills
CFLAGS   += -DAMK_HAVE_CUDA=1
LDLIBS   += -L$(CUDA_HOME)/lib64 -lcudart_static -ldl -lrt -lstdc++
MK_CU_SRC := $(sort $(wildcard megakernel/*.cu))
# the cuBLAS baseline of amk bench (cuBLAS itself is loaded with dlopen at run time)
BENCH_CU_SRC := $(sort $(wildcard bench/*.cu))
endif

BASE_SRC   := $(sort $(wildcard base/*.c))
IR_SRC     := $(sort $(wildcard ir/*.c))
LOWER_SRC  := $(sort $(wildcard lower/*.c))
VERIFY_SRC := $(sort $(wildcard verify/*.c))
REFVM_SRC  := $(sort $(wildcard refvm/*.c))
LINT_SRC   := $(sort $(wildcard lint/*.c))
BENCH_SRC  := $(sort $(filter-out bench/bench_%_main.c,$(wildcard bench/*.c)))
PROOFS_SRC := $(sort $(wildcard proofs/*.c))
SEARCH_SRC := $(sort $(wildcard search/*.c))
MK_SRC     := $(sort $(filter-out megakernel/bench_%_main.c,$(wildcard megakernel/*.c)))
TOOLS_SRC  := $(sort $(filter-out tools/amk_verify_main.c,$(wildcard tools/*.c)))
LIB_SRC    := $(BASE_SRC) $(IR_SRC) $(LOWER_SRC) $(VERIFY_SRC) $(REFVM_SRC) $(LINT_SRC) $(BENCH_SRC) $(PROOFS_SRC) $(SEARCH_SRC) $(MK_SRC)
LIB_OBJ    := $(LIB_SRC:%.c=$(BUILD)/%.o) $(MK_CU_SRC:%.cu=$(BUILD)/%.o) $(BENCH_CU_SRC:%.cu=$(BUILD)/%.o)
TOOLS_OBJ  := $(TOOLS_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ    := $(filter-out $(BUILD)/tools/amk.o,$(TOOLS_OBJ))
TEST_SRC   := $(sort $(wildcard tests/test_*.c))
TEST_BIN   := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
DEBIAN_PKGS := libcjson-dev libcriterion-dev libz3-dev zlib1g-dev lcov valgrind clang libclang-rt-14-dev \
               pkg-config python3-jsonschema

.PHONY: all deps test debug coverage clean demo bench-verify bench-amk-validate help install
.DEFAULT_GOAL := all

# all: the amk CLI, the amk-verify alias binary and the static library the parts share.
all: $(BUILD)/amk $(BUILD)/amk-verify $(BUILD)/libamk.a

# deps: install the Debian packages the build needs (as root), else print the command.
deps:
	@missing=""; for p in $(DEBIAN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then echo "deps: all present"; \
	elif [ "$$(id -u)" = 0 ]; then echo "deps: installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) >/dev/null || exit 1; \
	else echo "deps: missing$$missing; run: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; fi

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/megakernel/%.o: megakernel/%.cu $(wildcard megakernel/*.h) ir/amk_ir.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/bench/%.o: bench/%.cu $(wildcard bench/*.h) ir/amk_ir.h
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -c $< -o $@

$(BUILD)/libamk.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# the shared library of `make install` (same objects: everything is built position-independent)
VERSION := $(shell sed -n 's/^\#define AMK_TOOL_VERSION "\(.*\)"/\1/p' ir/amk_ir.h)
SOVERSION := $(firstword $(subst ., ,$(VERSION)))
$(BUILD)/libamk.so: $(LIB_OBJ)
	$(CC) -shared -o $@ -Wl,-soname,libamk.so.$(SOVERSION) $^ $(LDLIBS)

$(BUILD)/amk: $(TOOLS_OBJ) $(BUILD)/libamk.a
	$(CC) $(CFLAGS) -o $@ $(TOOLS_OBJ) $(BUILD)/libamk.a $(LDLIBS)

$(BUILD)/amk-verify: $(BUILD)/tools/amk_verify_main.o $(CLI_OBJ) $(BUILD)/libamk.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(BUILD)/libamk.a $(CLI_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CLI_OBJ) $(BUILD)/libamk.a $(LDLIBS) -lcriterion

# test: install missing packages, build, run every Criterion suite.
test: deps all $(TEST_BIN)
	@set -e; export AMK_BIN=$(abspath $(BUILD)/amk); export AMK_VERIFY_BIN=$(abspath $(BUILD)/amk-verify); \
	for t in $(TEST_BIN); do echo "== $$t"; $$t --jobs 2; done

# test-gpu: the megakernel suite with a GPU required (a missing GPU fails instead of skipping).
.PHONY: test-gpu
test-gpu: all $(BUILD)/tests/test_megakernel
	AMK_BIN=$(abspath $(BUILD)/amk) AMK_VERIFY_BIN=$(abspath $(BUILD)/amk-verify) AMK_REQUIRE_GPU=1 \
	  $(BUILD)/tests/test_megakernel --jobs 1

# debug: build everything with ASan and UBSan in build-debug/ and run every test suite there.
debug: deps
	$(MAKE) BUILD=build-debug OPT="-O1 -g -fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer -fno-sanitize-recover=all" \
	  all $(patsubst build/%,build-debug/%,$(TEST_BIN))
	@set -e; export AMK_BIN=$(abspath build-debug/amk); export AMK_VERIFY_BIN=$(abspath build-debug/amk-verify); \
	export AMK_SANITIZED=1 LSAN_OPTIONS=suppressions=$(abspath tests/lsan.supp):print_suppressions=0; \
	for t in $(patsubst build/%,build-debug/%,$(TEST_BIN)); do echo "== $$t (ASan+UBSan)"; $$t --jobs 2; done

# coverage: run the tests with gcov instrumentation and write an lcov HTML report.
coverage:
	rm -rf build-cov
	$(MAKE) BUILD=build-cov OPT="-O0 -g --coverage" all $(patsubst build/%,build-cov/%,$(TEST_BIN))
	@set -e; export AMK_BIN=$(abspath build-cov/amk); export AMK_VERIFY_BIN=$(abspath build-cov/amk-verify); \
	for t in $(patsubst build/%,build-cov/%,$(TEST_BIN)); do $$t --jobs 1 >/dev/null 2>&1 || true; done
	lcov -q --capture --directory build-cov --output-file build-cov/cov.info --rc lcov_branch_coverage=0
	lcov -q --extract build-cov/cov.info '*/ir/*' '*/lower/*' '*/verify/*' '*/refvm/*' '*/lint/*' '*/bench/*' '*/proofs/*' --output-file build-cov/cov.info
	mkdir -p $(BUILD)/coverage && genhtml -q build-cov/cov.info --output-directory $(BUILD)/coverage
	@for part in ir lower verify refvm lint bench proofs; do \
	  lcov -q --extract build-cov/cov.info "*/$$part/*" --output-file build-cov/$$part.info 2>/dev/null && \
	  printf '%-8s ' $$part && lcov --summary build-cov/$$part.info 2>&1 | grep lines; done

# demo: the main job. Lower the toy preset for h100 and prove it; refute a deadlocking variant
# with its witness; run a Hugging Face fixture through the reference VM and the eager gate;
# launch the proved plan on the GPU when there is one.
DEMO := $(BUILD)/demo
FIXTURE := tests/fixtures/llama_gqa2_f32
demo: deps all
	@mkdir -p $(DEMO)
	@echo "== 1. lower the toy preset for h100"
	$(BUILD)/amk lower --model toy --target h100 -o $(DEMO)/toy.json
	@echo "== 2. prove it (every obligation, with its time) and re-check the certificate without Z3"
	$(BUILD)/amk-verify $(DEMO)/toy.json --cert $(DEMO)/toy.cert.json
	$(BUILD)/amk cert check $(DEMO)/toy.cert.json $(DEMO)/toy.json
	@echo "== 3. a deliberately broken variant: two queues each wait on the other's later entry"
	$(BUILD)/amk mutate $(DEMO)/toy.json --kind cross_queue_deadlock --seed 1 -o $(DEMO)/toy_deadlock.json
	@$(BUILD)/amk-verify $(DEMO)/toy_deadlock.json --witness $(DEMO)/toy_deadlock.witness.json; \
	  rc=$$?; test $$rc -eq 1 || { echo "demo: expected REFUTED (exit 1), got exit $$rc"; exit 1; }
	@echo "== 4. correctness gate: reference VM vs eager forward on the HF fixture $(FIXTURE)"
	$(BUILD)/amk lower --model $(FIXTURE)/config.json --target h100 --dtype f32 --max-seq 64 -o $(DEMO)/fixture.json
	$(BUILD)/amk run $(DEMO)/fixture.json --weights $(FIXTURE)/model.safetensors --prompt 1,2,3 --steps 8 --check
	@echo "== 5. the proved toy plan on the GPU (skipped, with the reason, without one)"
	$(BUILD)/amk weights random --model toy --seed 1 --dtype bf16 -o $(DEMO)/toy.safetensors
	@rc=0; $(BUILD)/amk launch $(DEMO)/toy.json --cert $(DEMO)/toy.cert.json --weights $(DEMO)/toy.safetensors \
	  --prompt 1,2,3 --steps 8 --check || rc=$$?; \
	  if [ $$rc -eq 2 ]; then echo "demo: GPU launch skipped (see the reason above)"; elif [ $$rc -ne 0 ]; then exit $$rc; fi

# bench-verify: wall seconds and peak memory of full verification of lowered presets.
bench-verify: all $(BUILD)/bench_verify
	$(BUILD)/bench_verify --dir $(BUILD)/bench-verify

$(BUILD)/bench_verify: bench/bench_verify_main.c $(BUILD)/libamk.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libamk.a $(LDLIBS)

# bench-amk-validate: amk-verify vs AMK's validate() (race cap lifted) on AMK's 1B-70B programs; needs AMK_SRC.
bench-amk-validate: all
	python3 bench/bench_amk_validate.py --amk "$(AMK_SRC)" --verify $(BUILD)/amk-verify $(if $(PAIRS),--pairs $(PAIRS))

clean:
	rm -rf build build-debug build-cov

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# property: the verifier against the explicit-state explorer (tests/explorer.c) on 10,000 random programs.
.PHONY: property
property: $(BUILD)/tests/test_verify_property
	AMK_PROPERTY_SEEDS=10000 $(BUILD)/tests/test_verify_property

# bench-lower: wall time and peak memory of lowering each preset (llama-3-70b: < 2 s, < 1 GB).
.PHONY: bench-lower
$(BUILD)/bench_lower: bench/bench_lower_main.c $(BUILD)/libamk.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libamk.a $(LDLIBS)

bench-lower: $(BUILD)/bench_lower
	$(BUILD)/bench_lower

# bench-refvm: reference VM tokens/s on the toy fixture and s/step on llama-3.2-1b random weights.
.PHONY: bench-refvm
bench-refvm: $(BUILD)/bench_refvm
	$(BUILD)/bench_refvm --dir $(BUILD)

$(BUILD)/bench_refvm: bench/bench_refvm_main.c $(BUILD)/libamk.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libamk.a $(LDLIBS)

# bench-ir: median read and write time of a synthetic 30,000-task (about 15 MB) program.
.PHONY: bench-ir
bench-ir: $(BUILD)/bench_ir
	$(BUILD)/bench_ir

$(BUILD)/bench_ir: bench/bench_ir_main.c $(BUILD)/libamk.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libamk.a $(LDLIBS)

# bench-gpu: llama-3.2-1b-shape bf16 decode on the megakernel (random weights written once to
# $(BUILD)/bench-gpu/): correctness against the reference VM first, then median latency per token
# and weight bandwidth against the device's measured streaming-read bandwidth.
.PHONY: bench-gpu
bench-gpu: $(BUILD)/bench_gpu
	$(BUILD)/bench_gpu --dir $(BUILD)/bench-gpu

$(BUILD)/bench_gpu: bench/bench_gpu_main.c $(BUILD)/libamk.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libamk.a $(LDLIBS)

# proofs: regenerate the proof regression corpus (proofs/corpus.txt) into build/proofs/, run
# amk-verify on every program, compare verdicts and witness kinds; JUnit in build/proofs/junit.xml.
.PHONY: proofs
proofs: all
	rm -rf $(BUILD)/proofs
	$(BUILD)/amk proofs --corpus proofs/corpus.txt --dir $(BUILD)/proofs --verify $(BUILD)/amk-verify \
	  --junit $(BUILD)/proofs/junit.xml

# valgrind: memcheck of amk-verify and `amk ir check` over the malformed files and the toy mutants
# of the proof corpus: any memory error or definite/indirect leak fails.
VALGRIND := valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite,indirect \
            --show-leak-kinds=definite,indirect
.PHONY: valgrind
valgrind: proofs
	@n=0; for f in tests/data/malformed/*.json $(BUILD)/proofs/mut.toy*.json; do \
	  for cmd in "$(BUILD)/amk-verify $$f --format json" "$(BUILD)/amk ir check $$f"; do n=$$((n+1)); \
	    $(VALGRIND) $$cmd >/dev/null 2>$(BUILD)/proofs/valgrind.log; \
	    if [ $$? -eq 99 ]; then cat $(BUILD)/proofs/valgrind.log; echo "valgrind: errors in: $$cmd"; exit 1; fi; \
	  done; done; echo "valgrind: $$n runs, no memory errors, no definite or indirect leaks"

# fuzz: libFuzzer harnesses (tests/fuzz/) built with clang, ASan and UBSan in build-fuzz/ (no
# CUDA); each runs FUZZ_SECONDS (default 60) from its committed seed corpus (tests/fuzz/corpus/);
# new inputs go to build-fuzz/corpus/, crashes to build-fuzz/crashes/.
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES := program_json config_json safetensors verify cert claim target witness golden lint corpus
# inputs up to 64 KiB (libFuzzer's default follows the seeds, often 4 KiB)
FUZZ_MAX_LEN ?= 65536
FUZZ_OPT := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
.PHONY: fuzz fuzz-build
fuzz-build: deps
	$(MAKE) BUILD=build-fuzz CC=clang NVCC= OPT="$(FUZZ_OPT)" $(FUZZ_HARNESSES:%=build-fuzz/tests/fuzz/fuzz_%)

build-fuzz/tests/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libamk.a
	@mkdir -p $(dir $@)
	clang $(CFLAGS) -fsanitize=fuzzer -o $@ $< build-fuzz/libamk.a $(LDLIBS)

fuzz: fuzz-build
	@set -e; mkdir -p build-fuzz/crashes; for h in $(FUZZ_HARNESSES); do mkdir -p build-fuzz/corpus/$$h; \
	  echo "== fuzz_$$h for $(FUZZ_SECONDS) s"; rc=0; \
	  build-fuzz/tests/fuzz/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=30 \
	    -max_len=$(FUZZ_MAX_LEN) \
	    $(if $(FUZZ_SEED),-seed=$(FUZZ_SEED)) \
	    -print_final_stats=1 -artifact_prefix=build-fuzz/crashes/$$h- \
	    build-fuzz/corpus/$$h tests/fuzz/corpus/$$h >build-fuzz/fuzz_$$h.log 2>&1 || rc=$$?; \
	  grep -E '^stat::number_of_executed_units|^SUMMARY|ERROR' build-fuzz/fuzz_$$h.log || true; \
	  test $$rc -eq 0 || { echo "fuzz_$$h: exit $$rc, see build-fuzz/fuzz_$$h.log and build-fuzz/crashes/"; exit 1; }; done

# help: list the targets with the one-line comment above each.
help:
	@awk 'FNR == NR { if (match($$0, /^[a-z][a-z0-9-]*:/)) is_target[substr($$0, 1, RLENGTH - 1)] = 1; next } \
	  /^# [a-z][a-z0-9-]*: / { t = $$2; sub(/:$$/, "", t); d = $$0; sub(/^# [^:]*: */, "", d); open = 1; next } \
	  open && /^# / { d = d " " substr($$0, 3); next } \
	  open { open = 0; if (t in is_target) { sub(/\. .*/, ".", d); printf "  %-20s %s\n", t, d } }' \
	  $(firstword $(MAKEFILE_LIST)) $(firstword $(MAKEFILE_LIST)) | sort -u

# install: amk, amk-verify, libamk (static and shared), each part's public header, a pkg-config
# file (amk.pc) and man pages generated from --help, under $(DESTDIR)$(PREFIX) (default /usr/local).
PREFIX ?= /usr/local
PUBLIC_HEADERS = $(wildcard base/base.h ir/amk_ir.h lower/lower.h verify/verify.h refvm/refvm.h bench/bench_run.h \
                   proofs/proofs.h lint/lint.h search/search.h megakernel/megakernel.h bench/bench.h)
install: all $(BUILD)/libamk.so
	@set -e; d="$(DESTDIR)$(PREFIX)"; \
	install -d "$$d/bin" "$$d/lib/pkgconfig" "$$d/include/amk" "$$d/share/man/man1"; \
	install -m 755 $(BUILD)/amk $(BUILD)/amk-verify "$$d/bin/"; \
	install -m 644 $(BUILD)/libamk.a "$$d/lib/"; \
	install -m 755 $(BUILD)/libamk.so "$$d/lib/libamk.so.$(VERSION)"; \
	ln -sf libamk.so.$(VERSION) "$$d/lib/libamk.so.$(SOVERSION)"; ln -sf libamk.so.$(SOVERSION) "$$d/lib/libamk.so"; \
	for h in $(PUBLIC_HEADERS); do install -D -m 644 $$h "$$d/include/amk/$$h"; done; \
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VERSION)|' -e 's|@LIBS@|$(LDLIBS)|' tools/amk.pc.in \
	  >"$$d/lib/pkgconfig/amk.pc"; \
	sh tools/make_man.sh $(BUILD) "$$d/share/man/man1" $(VERSION); \
	echo "install: amk $(VERSION) in $$d (pkg-config: PKG_CONFIG_PATH=$$d/lib/pkgconfig pkg-config --cflags --libs amk)"
