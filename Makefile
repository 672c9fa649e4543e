# The two commands a new user runs: `make demo` and `make test`. Both create the virtual
# environment on first use and need nothing but python3 (3.11+) on the machine.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test up clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel

# One stamp per set of extras, remade when pyproject.toml changes.
$(VENV)/.installed-%: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	@touch $@

# The local stack with the local model (the `model` extra: nudenet's bundled ONNX model, from wheels).
demo: $(VENV)/.installed-local,model
	$(BIN)/pipeline demo

up: $(VENV)/.installed-local,model
	$(BIN)/pipeline up --local

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pipeline build *.egg-info
