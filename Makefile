# The two commands of the README's quick start:
#   make demo   runs the split-training demo on the built-in two-site default (no config needed)
#   make test   installs everything the tests need (apt, pip, npm) and runs them
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test setup-demo setup-test

demo: setup-demo
	$(PY) -m jupyter_split.demo

test: setup-test
	$(PY) -m pytest -ra --durations=30

setup-demo:
	bash .ci/setup demo

setup-test:
	bash .ci/setup test
