# Two commands on a fresh machine: `make test` and `make demo`. Both create .venv when it is missing
# and install the package (editable) with its test extras first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.glrp-installed
# torch/torchvision pins that this project's machines serve from local disk (a CUDA build that also
# runs on the CPU). Override e.g. `make test TORCH_SPEC="torch torchvision"` elsewhere.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo_output
DEMO_ARGS ?=

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[test]'
	$(PY) -c "import torch, torchvision, nnunetv2, pydensecrf.densecrf, nnunetv2_glrp; print('environment ready: torch', torch.__version__)"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

demo: $(STAMP)
	$(VENV)/bin/nnUNetv2_glrp demo --out $(DEMO_OUT) $(DEMO_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/bench_conversion.py --patients 20 --n4
	$(PY) benchmarks/bench_pretraining.py
	$(PY) benchmarks/bench_finetuning.py
	$(PY) benchmarks/bench_postprocessing.py

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
