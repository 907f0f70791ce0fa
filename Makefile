# Quick start: `make run` and `make test`. Each installs missing Debian
# packages first (as root with apt-get; otherwise prints the apt-get line).
BUILD      ?= build
BUILD_ASAN ?= build-asan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 60
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

PACKAGES = cmake pkg-config gcc make libzmq3-dev libmsgpack-dev libopenblas-dev \
           libuv1-dev libjansson-dev libyaml-dev libhttp-parser-dev libxxhash-dev \
           libcmocka-dev libcairo2-dev libncurses-dev clang libclang-rt-14-dev \
           python3-zmq python3-msgpack wrk prometheus curl \
           debootstrap chromium

.PHONY: all deps build build-asan run test test-asan bench fuzz clean docker

all: build

deps:
	@./.ci/deps.sh $(PACKAGES)

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) > /dev/null
	@cmake --build $(BUILD) -j $(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRLHF_SANITIZE=ON $(CMAKE_ARGS) > /dev/null
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

# The embedded default: SFT on the built-in task, then the distributed PPO
# pipeline (learner, reward worker, actors as processes on loopback).
RUN_DIR ?= runs/default
run: build
	./$(BUILD)/rlhf run --out $(RUN_DIR)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(BUILD_ASAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 RLHF_SANITIZED=1 \
	  ctest --output-on-failure -j $(JOBS) -LE 'docker|long'

# libFuzzer + ASan/UBSan on the protocol decoder for FUZZ_SECONDS, seeded with
# one valid message of every type (written by proto_tool from the main build).
fuzz: build
	@cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DRLHF_FUZZ=ON -DRLHF_OPENMP=OFF $(CMAKE_ARGS) > /dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz_decode
	@rm -rf $(BUILD_FUZZ)/samples $(BUILD_FUZZ)/corpus && mkdir -p $(BUILD_FUZZ)/samples $(BUILD_FUZZ)/corpus
	@./$(BUILD)/proto_tool samples $(BUILD_FUZZ)/samples && cp $(BUILD_FUZZ)/samples/*.msg $(BUILD_FUZZ)/corpus/
	./$(BUILD_FUZZ)/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	  -dict=proto/fuzz_decode.dict -artifact_prefix=$(BUILD_FUZZ)/ -print_final_stats=1 \
	  $(BUILD_FUZZ)/corpus

# Container images: rlhf (the three roles) and rlhf-prometheus. The base image
# (debian:bookworm-slim) is made with debootstrap when no registry can supply it.
DOCKER_IMAGE ?= rlhf:latest
DOCKER_PROM_IMAGE ?= rlhf-prometheus:latest
docker:
	@./docker/build-base.sh
	docker build --force-rm -f docker/Dockerfile -t $(DOCKER_IMAGE) .
	docker build --force-rm -f docker/Dockerfile.prometheus -t $(DOCKER_PROM_IMAGE) docker

bench: build
	./$(BUILD)/rlhf bench model --preset base --json

# End-to-end pipeline throughput as actors are added (learner, reward worker,
# N actors on loopback); BENCH_PIPELINE_ARGS="--delay-ms 0,100 --steps 10" etc.
BENCH_PIPELINE_ARGS ?=
.PHONY: bench-pipeline
bench-pipeline: build
	./$(BUILD)/rlhf bench pipeline --out runs/bench-pipeline --plot runs/bench-pipeline/scaling.png $(BENCH_PIPELINE_ARGS)

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_FUZZ)
