# Every target creates or refreshes what it needs; `make dev` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Every venv of the project installs the pinned, hashed dependencies of requirements/lock.txt (`make lock`).
LOCK := requirements/lock.txt
CLIENT_STAMP := $(VENV)/.installed-client
CLIENT_DIST := .aws-sam/client-dist
# The TypeScript client's npm dependencies (`npm ci`), installed again only when package-lock.json changes.
TS_CLIENT := clients/typescript
TS_STAMP := $(TS_CLIENT)/node_modules/.installed

# The infrastructure tools each live in their own venv (they pin their own boto3), made once per clone.
SAM_VENV := .venv-sam
SAM_STAMP := $(SAM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
PARLIAMENT_VENV := .venv-parliament
PARLIAMENT_STAMP := $(PARLIAMENT_VENV)/.installed
POLICIES := .aws-sam/policies
export SAM_CLI_TELEMETRY := 0

# `sam build` needs the Lambda runtime's Python (3.13) on PATH; the machine image ships it under pyenv.
PY313_PREFIX ?= $(shell pyenv prefix 3.13.0 2>/dev/null || \
	d="$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.13.0"; test -d "$$d" && echo "$$d")
PY313 := $(PY313_PREFIX)/bin/python3.13

TRANSLATED := .aws-sam/translated.json
VALIDATE_STAMP := .aws-sam/validate.stamp
BUILD_OUTPUT := .aws-sam/build/template.yaml
BUILD_INPUTS := template.yaml $(shell find functions layers -name __pycache__ -prune -o -type f -print 2>/dev/null)

.PHONY: test-313 test-rest test-parts reliability dev test lint typecheck validate build python313 unit integration e2e infra lock \
	clean bench-tokens bench-client bench-refresh-ahead bench-scale cost outage-drill openapi soak client-wheel ts-deps ts-test \
	package

$(STAMP): pyproject.toml $(LOCK)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 is required (PYTHON=$(PYTHON))"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

# Pin what pyproject.toml asks for (keeping the current pins it still allows; ARGS=--upgrade re-pins
# everything to the newest versions) and regenerate the layer's requirements.
lock: $(STAMP)
	$(BIN)/python scripts/lock.py $(ARGS)

$(SAM_STAMP): requirements/sam.txt
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet -r requirements/sam.txt
	@touch $@

$(CHECKOV_STAMP): requirements/checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r requirements/checkov.txt
	@touch $@

$(PARLIAMENT_STAMP): requirements/parliament.txt
	@test -x $(PARLIAMENT_VENV)/bin/python || $(PYTHON) -m venv $(PARLIAMENT_VENV)
	$(PARLIAMENT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PARLIAMENT_VENV)/bin/python -m pip install --quiet -r requirements/parliament.txt
	@touch $@

dev: $(STAMP) $(CLIENT_STAMP)
	$(BIN)/python -m zus_local $(ARGS)

# import-linter: the layers of docs/design.md's module map ([tool.importlinter] in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	PYTHONPATH=.:layers/zus_m2m/python $(BIN)/lint-imports --no-cache

# mypy strict: the files of [tool.mypy] in pyproject.toml, then each test suite on its own (every suite
# has a conftest.py, and one run must not hold two modules of one name).
TYPED_SUITES := tests/unit tests/integration tests/e2e tests/infra tests/reliability
typecheck: $(STAMP)
	$(BIN)/mypy
	@for suite in $(TYPED_SUITES); do echo "$(BIN)/mypy $$suite"; $(BIN)/mypy $$suite || exit 1; done

# cfn-lint and `sam validate --lint` on template.yaml; checkov on template.yaml and on the
# CloudFormation the SAM transform expands it into (offline), so generated resources are checked too;
# the Serverless Application Repository metadata as SAR takes it, its version pyproject.toml's; parliament on
# every IAM policy of the stack, resolved as deployed (scripts/export_policies.py): the roles' policies, the
# table's and the key's, and the one the code puts on every client secret.
validate: $(VALIDATE_STAMP)

$(VALIDATE_STAMP): template.yaml samconfig.toml scripts/translate_template.py local/zus_local/cfn_yaml.py \
		scripts/check_sar_metadata.py pyproject.toml LICENSE README.md \
		scripts/export_policies.py scripts/parliament-key-policy.yaml layers/zus_m2m/python/zus_m2m/secret_policy.py \
		$(SAM_STAMP) $(CHECKOV_STAMP) $(PARLIAMENT_STAMP) $(STAMP)
	$(SAM_VENV)/bin/python scripts/check_sar_metadata.py template.yaml
	$(SAM_VENV)/bin/cfn-lint template.yaml
	$(SAM_VENV)/bin/sam validate --lint --template-file template.yaml --region us-east-1
	$(SAM_VENV)/bin/python scripts/translate_template.py template.yaml $(TRANSLATED)
	$(SAM_VENV)/bin/cfn-lint $(TRANSLATED)
	$(CHECKOV_VENV)/bin/checkov --framework cloudformation --skip-download --compact --quiet \
		-f template.yaml -f $(TRANSLATED)
	$(BIN)/python scripts/export_policies.py template.yaml $(POLICIES)
	$(PARLIAMENT_VENV)/bin/parliament --directory $(POLICIES) --include_policy_extension .json \
		--exclude_pattern '.*/key-policy/.*' </dev/null
	$(PARLIAMENT_VENV)/bin/parliament --config scripts/parliament-key-policy.yaml \
		--directory $(POLICIES)/key-policy --include_policy_extension .json </dev/null
	@touch $@

# Rebuilt only when template.yaml, functions/ or layers/ change.
build: $(BUILD_OUTPUT)

$(BUILD_OUTPUT): $(BUILD_INPUTS) | python313 $(SAM_STAMP)
	PATH="$(PY313_PREFIX)/bin:$$PATH" $(SAM_VENV)/bin/sam build --template-file template.yaml
	@touch $@

# The packaged template `sam publish` sends to the Serverless Application Repository (docs/deploy.md):
# the build's code, LICENSE and README.md uploaded to the S3 bucket SAR_BUCKET (in SAR_REGION; its policy
# lets serverlessrepo.amazonaws.com read the objects), the template rewritten to point at them.
SAR_BUCKET ?=
SAR_REGION ?= us-east-1
PACKAGED := .aws-sam/packaged.yaml
package: validate build
	@test -n "$(SAR_BUCKET)" || { echo "SAR_BUCKET is not set: make package SAR_BUCKET=<bucket> (docs/deploy.md)"; exit 1; }
	@! grep -q 'SourceCodeUrl: https://source.invalid/' template.yaml || \
		{ echo "template.yaml's SourceCodeUrl is a placeholder: set it to the public repository's URL"; exit 1; }
	$(SAM_VENV)/bin/sam package --template-file $(BUILD_OUTPUT) --s3-bucket $(SAR_BUCKET) \
		--s3-prefix zus-m2m --region $(SAR_REGION) --output-template-file $(PACKAGED)
	@echo "publish it: $(SAM_VENV)/bin/sam publish --template $(PACKAGED) --region $(SAR_REGION)"

python313:
	@test -x "$(PY313)" || { echo "Python 3.13 is missing: sam build needs it (pyenv install 3.13.0, or set PY313_PREFIX)"; exit 1; }

# Lambda runs Python 3.13: the suite runs on it too, in its own venv, before the full run on $(PYTHON).
VENV313 := .venv-313
STAMP313 := $(VENV313)/.installed

$(STAMP313): pyproject.toml clients/python/pyproject.toml $(LOCK) | python313
	@test -x $(VENV313)/bin/python || $(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install --quiet --upgrade pip
	$(VENV313)/bin/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(VENV313)/bin/python -m pip install --quiet --no-deps -e . -e clients/python
	@touch $@

# Every test runs once (tests/conftest.py, ZUS_TEST_PART): the service's unit, integration and e2e tests
# on 3.13 in Auth0's dialect, without the tests that wait out a 20-30 s window; the rest on $(PYTHON); then
# the TypeScript client's tests (their summary printed). The suites whose tests are independent run on XDIST
# workers. The reliability suite (one results table, a whole-system check at its end) runs in one process
# beside them: it spends most of its time waiting on timeouts and faults, not on the CPU. Its servers take
# a port band of their own (tests/e2e/e2e_support.py).
XDIST ?= 3
test-313: $(STAMP313) $(CLIENT_STAMP) build
	ZUS_TEST_PART=lambda $(VENV313)/bin/pytest -q -p no:cacheprovider -n $(XDIST) tests/unit tests/integration tests/e2e

test-rest: $(STAMP) $(CLIENT_STAMP) $(TS_STAMP) validate build client-wheel
	ZUS_TEST_PART=rest ZUS_PYTHON313="$(PY313)" $(BIN)/pytest -q -p no:cacheprovider -n $(XDIST) \
		--ignore=tests/reliability --ignore=clients/python/tests/test_typescript_client.py
	$(TS_TEST)

reliability: $(STAMP) $(CLIENT_STAMP) build
	ZUS_PORT_BAND=7 $(BIN)/pytest -q -p no:cacheprovider tests/reliability

# Everything the parts use is made before the first of them starts, side by side (the venvs, the static
# checks and the build do not depend on each other's order; each one's output is printed whole when it
# ends): e2e tests run `make dev`, which must find its venvs up to date (two of them making a venv at once
# would race). Then the parts one after the other; the reliability suite starts as soon as its venv and the
# build are there, beside all of that.
test-parts: lint typecheck validate build $(STAMP313) $(CLIENT_STAMP) $(TS_STAMP) client-wheel
	@$(MAKE) --no-print-directory test-313
	@$(MAKE) --no-print-directory test-rest

test:
	@$(MAKE) --no-print-directory -j4 --output-sync=target test-parts reliability

# One suite at a time. The infra suite checks the translated template and the build too.
unit integration e2e: $(STAMP)
	$(BIN)/pytest -q tests/$@

infra: $(STAMP) validate build
	ZUS_PYTHON313="$(PY313)" $(BIN)/pytest -q tests/infra

# The client library and CLI (clients/python, its own distribution): editable in .venv (the `zus-m2m`
# command, its tests), and the wheel services install.
$(CLIENT_STAMP): clients/python/pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps -e clients/python
	@touch $@

client-wheel: $(STAMP)
	rm -rf $(CLIENT_DIST)
	$(BIN)/python -m pip wheel --quiet --no-deps clients/python -w $(CLIENT_DIST)

# The TypeScript client (clients/typescript, @zus-m2m/client): its tests (node's test runner) against the
# local stack, driven by clients/python/tests/test_typescript_client.py; printed (-s): node's summary lines
# and the fleet's vend calls.
TS_TEST := $(BIN)/pytest -q -p no:cacheprovider -s clients/python/tests/test_typescript_client.py
$(TS_STAMP): $(TS_CLIENT)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: the TypeScript client needs Node 20 or later"; exit 1; }
	cd $(TS_CLIENT) && npm ci --no-audit --no-fund
	@touch $@

ts-deps: $(TS_STAMP)

ts-test: $(STAMP) $(CLIENT_STAMP) $(TS_STAMP)
	$(TS_TEST)

clean:
	rm -rf $(VENV) $(VENV313) $(SAM_VENV) $(CHECKOV_VENV) $(PARLIAMENT_VENV) .pytest_cache .mypy_cache .ruff_cache \
		.aws-sam $(TS_CLIENT)/node_modules $(TS_CLIENT)/dist

# Token vending under 8 simulated containers x 8 threads for about a minute, and cold start.
bench-tokens: $(STAMP) $(STAMP313) build
	$(BIN)/python scripts/bench_tokens.py $(ARGS)

# What refresh-ahead costs the caller that renews the token in its invocation, against handing the renewal
# to the work queue (docs/design.md, Refresh-ahead); ARGS="--zus-latency-ms 300" for a slower Zus.
bench-refresh-ahead: $(STAMP)
	$(BIN)/python scripts/bench_refresh_ahead.py $(ARGS)

# How often services using zus-m2m-client call the token route (vend calls per process-hour), in scaled
# time; ARGS="--record" writes docs/bench/client.json (make cost takes the vend path's load from it).
bench-client: $(STAMP) $(CLIENT_STAMP)
	$(BIN)/python scripts/bench_client.py $(ARGS)

# Scheduled work of N clients (default 1,000; ARGS="--clients 10000") on moto and the emulator: an hour of
# one-minute cycles; ARGS="--record" also writes its figures to docs/bench/scale.json (make cost reads them).
bench-scale: $(STAMP)
	$(BIN)/python scripts/bench_scale.py $(ARGS)

# docs/cost.md: the monthly cost of N clients x M vend calls/s, from docs/prices.json, template.yaml and the
# benchmarks' recorded figures (docs/bench/*.json); a test fails when it drifts.
cost: $(STAMP)
	$(BIN)/python scripts/cost_model.py $(ARGS)
# A 40 s outage of Zus's token endpoint under 8 callers at 1 request/s: what it costs (docs/reliability.md).
outage-drill: $(STAMP)
	$(BIN)/python scripts/outage_drill.py $(ARGS)

# docs/openapi.json from the handlers' route decorators (tests/reliability fails when it drifts).
openapi: $(STAMP)
	$(BIN)/python scripts/openapi.py

# The reliability suite's long profile (faults, bad input, leaks, concurrency; docs/reliability.md),
# about 42 minutes on a 2-core machine; its last lines are the results table.
SOAK_TABLE := .pytest_cache/reliability-table.txt
soak: $(STAMP)
	@rm -f $(SOAK_TABLE)
	ZUS_M2M_SOAK=1 ZUS_M2M_RELIABILITY_TABLE=$(SOAK_TABLE) $(BIN)/pytest tests/reliability -p no:randomly -q; \
		status=$$?; echo; cat $(SOAK_TABLE) 2>/dev/null || echo "no results table: the suite did not finish"; exit $$status
