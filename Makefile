# Everything a developer runs. `make test` on a fresh clone builds the venv first.
STAGE ?= dev
PORT ?= 8000
# chalice package needs a region; everything else uses your AWS profile's or environment's.
PACKAGE_REGION = $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),us-east-1)

VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test check run package deploy delete secrets manifest feedback ask demo bench lint docs clean

$(STAMP): requirements.txt requirements-dev.txt
	@python=$$(scripts/find-python.sh) || exit 1; \
	  test -x $(BIN)/python || $$python -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# Unit and integration tests mostly wait on loopback fakes (deadlines, stalls, retries), so more
# workers than cores pay: 5 on the 2-core development machine (see README, Tests). XDIST= runs serially.
XDIST ?= -n 5 --dist worksteal
# The test runs keep bytecode, and pytest its rewritten test modules, even where the environment
# says not to: each test worker otherwise compiles every test module again (about 4 s of CPU
# apiece). Only the test runs: a .pyc written into chalicelib/ by deploy's own scripts would change
# the project hash by which chalice reuses a zip.
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest

# The whole suite, in two runs: unit and integration in parallel, then e2e and tools one test at
# a time (the load test times chalice local's acknowledgements; the tools run make, chalice and
# moto servers in the project). PYTEST_ARGS goes to both runs: one that it leaves without tests
# (pytest's exit code 5) fails the target only if the other has none either.
test: $(STAMP)
	@$(PYTEST) tests/unit tests/integration $(XDIST) $(PYTEST_ARGS); fast=$$?; \
	  $(PYTEST) tests/e2e tests/tools $(PYTEST_ARGS); slow=$$?; \
	  if [ $$fast -eq 5 ] && [ $$slow -eq 5 ]; then exit 5; fi; \
	  for status in $$fast $$slow; do case $$status in 0|5) ;; *) exit $$status ;; esac; done

# The fast lane between edits: unit and integration tiers (no chalice local, no scripts or bench), in
# parallel, each hypothesis property on a quarter of its examples (MAMEKA_FAST_LANE; make test runs all).
check: $(STAMP)
	MAMEKA_FAST_LANE=1 $(PYTEST) tests/unit tests/integration $(XDIST) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

# The README's settings table, rewritten from chalicelib/settings.py (a unit test fails while they differ).
docs: $(STAMP)
	$(BIN)/python scripts/settings_table.py --write

# check_local.py says what a local run lacks (one line each) and stops only when nothing could work.
run: $(STAMP)
	@$(BIN)/python scripts/check_local.py $(STAGE)
	$(BIN)/chalice local --stage $(STAGE) --port $(PORT)

package: $(STAMP)
	rm -rf out && mkdir -p out
	$(BIN)/python scripts/deployment.py merge-template $(STAGE) > out/merge.json
	AWS_DEFAULT_REGION=$(PACKAGE_REGION) $(BIN)/chalice package --stage $(STAGE) --merge-template out/merge.json out
	$(BIN)/python scripts/compile_bytecode.py out/deployment.zip
	@echo "wrote out/sam.json and out/deployment.zip for stage $(STAGE)"

# WORKER_MAX_CONCURRENCY (`make deploy STAGE=prod WORKER_MAX_CONCURRENCY=10`, or for make package
# the template parameter's default) reaches scripts/deployment.py through the environment.
#
# Chalice cannot create DynamoDB tables: ensure-table creates the worker's claims table when it is
# missing (one line either way) before anything is built.
#
# chalice deploy has no build hook, but it reuses .chalice/deployments/<hash of inputs>.zip when
# that exists: build it with chalice package, add bytecode to that very zip (named by Chalice's own
# function, which is not always the newest: a rollback reuses an older one), and deploy ships it.
deploy: $(STAMP)
	@$(BIN)/python scripts/deployment.py preflight $(STAGE)
	@$(BIN)/python scripts/deployment.py ensure-table $(STAGE)
	rm -rf out/prebuild
	AWS_DEFAULT_REGION=$(PACKAGE_REGION) $(BIN)/chalice package --stage $(STAGE) out/prebuild
	zip=$$($(BIN)/python scripts/deployment.py deployment-zip $(STAGE) out/prebuild/deployment.zip) && \
	  $(BIN)/python scripts/compile_bytecode.py "$$zip"
	$(BIN)/chalice deploy --stage $(STAGE)
	$(BIN)/python scripts/deployment.py configure-worker $(STAGE)

# Removes the stage (chalice delete), then offers to delete its claims table too. YES=1 deletes it
# and YES=0 keeps it without asking (make puts YES in the environment); unset, it is asked on a
# terminal and kept from a pipe.
delete: $(STAMP)
	@$(BIN)/python scripts/deployment.py preflight $(STAGE)
	$(BIN)/chalice delete --stage $(STAGE)
	@$(BIN)/python scripts/deployment.py delete-table $(STAGE)

secrets: $(STAMP)
	@$(BIN)/python scripts/store_secrets.py $(STAGE)

manifest: $(STAMP)
	@$(BIN)/python scripts/manifest.py $(STAGE)

# DAYS (default 30) reaches scripts/feedback.py as --days.
feedback: $(STAMP)
	@$(BIN)/python scripts/feedback.py $(STAGE) $(if $(DAYS),--days $(DAYS))

# Q and EVENT (command, mention or dm) are read from the environment, where make puts
# `make ask EVENT=mention Q=...` too: pasting them into the recipe would let the shell interpret them.
# URL, TIMEOUT, SLACK_BOT_TOKEN, SLACK_API_URL... reach scripts/ask.py the same way. Without
# SLACK_SIGNING_SECRET and URL it asks a playground of its own (make demo's): no keys needed.
ask: $(STAMP)
	@EVENT="$${EVENT:-command}" $(BIN)/python scripts/ask.py "$$Q"

# The real app against a stand-in model and a fake Slack, on loopback: no keys. OPENAI_BASE_URL
# (loopback) and OPENAI_MODEL reach scripts/demo.py through the environment for a local model.
demo: $(STAMP)
	@$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) out .pytest_cache
