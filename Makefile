# The two commands of the README's quick start:
#   make demo   runs the split-training demo on the built-in two-site default (no config needed)
#   make test   installs everything the tests need (apt, pip, npm) and runs them
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup-demo setup-test

demo: setup-demo
	$(PY) -m jupyter_split.demo

# The tests wait on real services, kernels and a browser more than they compute: on 2 cores,
# 3 workers take the suite from about 20 to about 10 minutes (WORKERS=0 runs it in one process).
# A test file runs on one worker (`--dist loadfile`): its tests may share what they start.
# The tests marked `alone` measure delays and rates, so they run after, in one process; both
# parts always run, and the target fails if either did.
WORKERS ?= 3

test: setup-test
	$(PY) -m pytest -ra --durations=30 -n $(WORKERS) --dist loadfile -m "not alone"; shared=$$?; \
	$(PY) -m pytest -ra --durations=10 -m alone && exit $$shared

setup-demo:
	bash .ci/setup demo

setup-test:
	bash .ci/setup test
