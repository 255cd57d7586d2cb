# tsumugi — the two commands a new machine needs:
#   make demo   installs dependencies, builds, and runs the end-to-end demo on bundled data
#   make test   installs dependencies, builds, and runs every test (also under ASan+UBSan)
# Both are idempotent.

SHELL := /bin/bash
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan

DEB_PACKAGES := build-essential cmake ninja-build pkg-config git zstd python3 python3-pip \
  libsimdjson-dev nlohmann-json3-dev libcli11-dev libfmt-dev libtomlplusplus-dev \
  libzstd-dev zlib1g-dev libdeflate-dev libxxhash-dev libutf8proc-dev libcld2-dev \
  libopenmpi-dev openmpi-bin libgtest-dev libgmock-dev libbenchmark-dev libdnnl-dev python3-torch \
  sentencepiece python3-sentencepiece python3-numpy libdivsufsort-dev mecab mecab-ipadic-utf8 libmecab-dev \
  libcpp-httplib-dev chromium chromium-driver python3-fuzzywuzzy python3-levenshtein python3-scipy python3-psutil

.PHONY: all deps pydeps build build-asan test test-fast test-asan demo bench corpus clean-build

all: build

# Installs only what is missing, so repeated runs cost one dpkg query.
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

# Test oracles from PyPI (HF tokenizers, numpy, safetensors, tensorboard), into whichever python3 is first on PATH.
pydeps: deps
	@python3 -c "import tokenizers, numpy, safetensors, tensorboard" 2>/dev/null || \
	  python3 -m pip install -q --break-system-packages -r tests/requirements.txt 2>/dev/null || \
	  python3 -m pip install -q -r tests/requirements.txt
	@# Oracles that need Debian's CPU torch live with /usr/bin/python3. peft and accelerate are installed
	@# without dependencies: their torch requirement would otherwise pull GBs of CUDA wheels from PyPI.
	@/usr/bin/python3 -c "import transformers, peft, openai, selenium, gguf, sacrebleu" 2>/dev/null || { \
	  /usr/bin/python3 -m pip install -q --break-system-packages -r tests/requirements-torch.txt && \
	  /usr/bin/python3 -m pip install -q --break-system-packages --no-deps -r tests/requirements-nodeps.txt; }

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD) -j $(JOBS)

# The sanitizer build leaves out the CUDA backend: nvcc code cannot be instrumented and cannot run
# without a GPU; its CPU-emulator tests run in the normal build.
$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DTSUMUGI_SANITIZE=ON -DTSUMUGI_BUILD_BENCH=OFF -DTSUMUGI_WITH_CUDA=OFF

build-asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) -j $(JOBS) tsumugi tsumugi_tests

test-fast: build pydeps
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# Under the sanitizers, the tests whose time goes to starting Python with torch/transformers/peft/
# tokenizers and comparing numbers are left out; the comparisons themselves run in the normal build,
# and the C++ they reach runs under the sanitizers in other tests:
#   TorchParity             forward/backward: WholeModel, CpuKernels, SftLora, PretrainCli
#   TokenizerHfExport.      export-hf: TokenizerHfExportFiles (both schemas, refusals)
#   InferHf. SftPeft.       HF checkpoint and PEFT adapter loading: InferWeights (LoRA merge, bad
#                           adapters), InferBadModel, SftLora (PEFT files), SftCli (sft merge)
#   ExportCliModel.HfExportLoadsInTransformers..., .ImportsWhatTransformersWrote
#                           HF export and import, sharded, f32/f16/bf16:
#                           ExportCliModel.HfExportImportRoundTripsBitExactly, ExportCliErrors
ASAN_EXCLUDE ?= TorchParity|TokenizerHfExport\.|InferHf\.|SftPeft\.|ExportCliModel\.(HfExportLoadsInTransformers|ImportsWhatTransformersWrote)

test-asan: build-asan pydeps
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 ctest --output-on-failure -j $(JOBS) -E '$(ASAN_EXCLUDE)'

test: test-fast test-asan

demo: build
	bash scripts/demo.sh

bench: build
	bash bench/corpus_clean.sh

# Rebuilds the bundled corpus from Debian packages: manpages-ja manpages-ja-dev manpages manpages-dev
# zlib1g-dev libzstd-dev libc6-dev man-db groff-base bsdextrautils (the script names any that are missing).
corpus:
	python3 scripts/build_corpus.py --out data/corpus

clean-build:
	rm -rf $(BUILD) $(ASAN_BUILD)
