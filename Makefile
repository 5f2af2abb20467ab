# The few verbs of MCPNest. `make run` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format bench clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## run: the portal with embedded defaults (SQLite, in-memory channels, in-process tasks), a demo
## MCP server on 127.0.0.1:8765 behind the gateway, and demo data (credentials printed last)
run: $(STAMP)
	DEBUG=1 $(BIN)/python manage.py migrate --noinput
	DEBUG=1 $(BIN)/python manage.py demo_upstream & demo=$$!; \
	trap 'kill $$demo 2>/dev/null; DEBUG=1 $(BIN)/python manage.py terminate demo --all >/dev/null 2>&1' EXIT INT TERM; \
	DEBUG=1 $(BIN)/python manage.py seed_marketplace && \
	DEBUG=1 $(BIN)/python manage.py seed_demo && \
	DEBUG=1 $(BIN)/python manage.py runserver 127.0.0.1:8000

## test: the whole test suite (uses DATABASE_URL / REDIS_URL when set; otherwise SQLite, and Redis tests skip)
test: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/admin_audit.py --rows 100000

clean:
	rm -rf $(VENV) var staticfiles
