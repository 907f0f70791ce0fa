# Quick start: `make run` and `make test`. Each installs missing Debian
# packages first (as root with apt-get; otherwise prints the apt-get line).
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

PACKAGES = cmake pkg-config gcc make libzmq3-dev libmsgpack-dev libopenblas-dev \
           libuv1-dev libjansson-dev libyaml-dev libhttp-parser-dev libxxhash-dev \
           libcmocka-dev libcairo2-dev libncurses-dev clang libclang-rt-14-dev

.PHONY: all deps build build-asan run test test-asan bench fuzz clean

all: build

deps:
	@./.ci/deps.sh $(PACKAGES)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) > /dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRLHF_SANITIZE=ON $(CMAKE_ARGS) > /dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

# Until the distributed pipeline (`rlhf run`) lands, the default run is the
# SFT stage of the lifecycle on the built-in addition task.
RUN_DIR ?= runs/sft
run: build
	./$(BUILD)/rlhf sft --task add --preset small --steps 1500 --batch 64 --lr 2e-3 --eval-every 250 --out $(RUN_DIR)
	./$(BUILD)/rlhf eval $(RUN_DIR)/final --task add
	./$(BUILD)/rlhf sample $(RUN_DIR)/final --prompt "12+345=" -n 3 --temperature 0.5 --max-new 8

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 RLHF_SANITIZED=1 \
	  ctest --output-on-failure -j $(JOBS)

bench: build
	./$(BUILD)/rlhf bench model --preset base --json

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
