# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)
export FLASK_APP := app

.PHONY: help run test db admin notify users docs lint soak bench bench-scaleout bench-analytics \
	bench-variants bench-burst bench-notify bench-requests bench-acks bench-ack-cpu bench-startup assets clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@$(PY) -m pip install -q -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $@

## help: list these targets
help:
	@sed -n -e 's/^## \([a-z-]*:\)/\1/p' -e 's/^## /    /p' Makefile

## run: install, migrate the database, create a demo admin on first run, serve on :5000
## (Ctrl-C or SIGTERM stops it, whether its output goes to a terminal or a pipe)
run: db
	@$(PY) -m flask users demo
	@$(PY) app.py

## db: apply the migrations to DATABASE_URL (SQLite under instance/ by default)
db: $(STAMP)
	@$(PY) -m flask db upgrade

## admin: create an admin, asking for the password (EMAIL=you@example.com)
admin: db
	@test -n "$$EMAIL" || { echo "usage: make admin EMAIL=you@example.com" >&2; exit 2; }
	@$(PY) -m flask users create "$$EMAIL" --admin

## notify: store a notification for a user and emit it to their sockets
## (USER=<email or id> TITLE=... MESSAGE=...; TYPE=warning, DATA='{"k": 1}' optional)
notify: $(STAMP)
	@test "$(origin USER)" = "command line" && test -n "$$TITLE" && test -n "$$MESSAGE" || \
		{ echo "usage: make notify USER=<email or id> TITLE=... MESSAGE=..." >&2; exit 2; }
	@$(PY) -m flask notify "$$USER" --title "$$TITLE" --message "$$MESSAGE" \
		$(if $(TYPE),--type "$$TYPE") $(if $(DATA),--data "$$DATA")

## users: any `flask users` command: ARGS="disable bob@example.com", ARGS="quota bob@example.com
## --daily 500", ARGS=--help for the list
users: $(STAMP)
	@$(PY) -m flask users $(ARGS)

## docs: rewrite README.md's configuration tables from config.py
docs: $(STAMP)
	@$(PY) scripts/settings_docs.py

## test: the whole suite (PostgreSQL, Redis and Chromium cases skip when absent,
## unless REQUIRE_SERVICES=1), in TEST_WORKERS processes (0: in this one)
TEST_WORKERS ?= 3
test: $(STAMP)
	@$(PY) -m ruff check .
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

## assets: refresh the vendored browser libraries in static/vendor from npm
assets:
	@scripts/vendor_assets.sh

lint: $(STAMP)
	@$(PY) -m ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache test-output

## bench: the hub against the Node socket.io peer (SIZES=1000,5000,10000 BACKENDS=sqlite,postgresql;
## BENCH_LABEL=capacity keeps the run in its own section instead of replacing the main table;
## AGAINST=main measures that commit's hub too, in the same run; ROUNDS=3 rounds, medians)
bench: $(STAMP)
	@$(PY) -m bench.run $(if $(SIZES),--sizes $(SIZES)) $(if $(BACKENDS),--backends $(BACKENDS)) \
		$(if $(BENCH_LABEL),--label $(BENCH_LABEL)) $(if $(AGAINST),--against $(AGAINST)) \
		$(if $(ROUNDS),--rounds $(ROUNDS))

## soak: connection churn for SOAK_SECONDS (default 300) on the hub (full rounds, then basic
## ones) and on the Node peer; prints the figures and PASS/FAIL checks, fails if one fails
soak: $(STAMP)
	@$(PY) -m bench.soak $(if $(SOAK_SECONDS),--seconds $(SOAK_SECONDS))

## bench-burst: garbage-collection pauses while 2,000 sockets connect to a hub holding 10,000
## (BASE=10000 BURST=2000 BACKENDS=sqlite,postgresql ROUNDS=3 AGAINST=ref)
bench-burst: $(STAMP)
	@$(PY) -m bench.burst $(if $(BASE),--base $(BASE)) $(if $(BURST),--burst $(BURST)) \
		$(if $(BACKENDS),--backends $(BACKENDS)) $(if $(ROUNDS),--rounds $(ROUNDS)) \
		$(if $(AGAINST),--against $(AGAINST))

## bench-notify: the server's CPU per targeted notify and per bare GET, and the notifies' latency,
## hub against the Node peer
## (CONNECTIONS=1000 COUNT=2000 RATE=200 BACKENDS=sqlite,postgresql ROUNDS=3 AGAINST=ref)
bench-notify: $(STAMP)
	@$(PY) -m bench.notify_cost $(if $(CONNECTIONS),--connections $(CONNECTIONS)) \
		$(if $(COUNT),--count $(COUNT)) $(if $(RATE),--rate $(RATE)) \
		$(if $(BACKENDS),--backends $(BACKENDS)) $(if $(ROUNDS),--rounds $(ROUNDS)) \
		$(if $(AGAINST),--against $(AGAINST))

## bench-requests: instructions per REST request (GET /healthz, a token-checked GET, a notify),
## counted by callgrind, the same run after run (COUNT=300 AGAINST=ref)
bench-requests: $(STAMP)
	@$(PY) -m bench.request_cost $(if $(COUNT),--count $(COUNT)) $(if $(AGAINST),--against $(AGAINST))

## bench-acks: instructions per Socket.IO ack round trip, the hub against the Node peer, counted
## by callgrind (COUNT=2000 AGAINST=ref)
bench-acks: $(STAMP)
	@$(PY) -m bench.ack_cost $(if $(COUNT),--count $(COUNT)) $(if $(AGAINST),--against $(AGAINST))

## bench-ack-cpu: user and system CPU per Socket.IO ack round trip, the hub against the Node
## peer, the servers in turn (COUNT=30000 ROUNDS=5 AGAINST=ref)
bench-ack-cpu: $(STAMP)
	@$(PY) -m bench.ack_cpu $(if $(COUNT),--count $(COUNT)) $(if $(ROUNDS),--rounds $(ROUNDS)) \
		$(if $(AGAINST),--against $(AGAINST))

## bench-startup: what a hub process costs from its command to its first answer, and building
## the app alone (RUNS=15 AGAINST=ref)
bench-startup: $(STAMP)
	@$(PY) -m bench.startup $(if $(RUNS),--runs $(RUNS)) $(if $(AGAINST),--against $(AGAINST))

## bench-scaleout: 10,000 connections on one process, then on several sharing PostgreSQL and
## Redis (CONNECTIONS=10000 ARRANGEMENTS=one,two-one-core,two,three; BASELINE=main runs each
## arrangement again on that revision's code, in the same session)
bench-scaleout: $(STAMP)
	@$(PY) -m bench.scaleout $(if $(CONNECTIONS),--connections $(CONNECTIONS)) $(if $(ARRANGEMENTS),--arrangements $(ARRANGEMENTS)) \
		$(if $(BASELINE),--baseline $(BASELINE))

## bench-analytics: 1,000 analytics subscribers, messages completing at 100/s; the
## analytics work's share of one core (BACKENDS=sqlite,postgresql BENCH_SECONDS=20)
bench-analytics: $(STAMP)
	@$(PY) -m bench.analytics $(if $(BACKENDS),--backends $(BACKENDS)) $(if $(BENCH_SECONDS),--seconds $(BENCH_SECONDS))

## bench-variants: the shipped transport and JSON against python-engineio's own socket,
## simple-websocket and the standard json (CONNECTIONS=5000 VARIANTS=hub,hub-json,...)
bench-variants: $(STAMP)
	@$(PY) -m bench.variants $(if $(CONNECTIONS),--connections $(CONNECTIONS)) $(if $(VARIANTS),--variants $(VARIANTS))
