# taskchat — developer entry points. `make run` starts the service against
# the local Postgres; `make test` runs every test.

# Local defaults; override on the command line or in the environment.
# BETTER_AUTH_SECRET has none: unless you set one (the front end's), chatd
# in development mode generates one into $(DATA_DIR)/dev-auth-secret and
# keeps it there, and make token signs with that file.
DATABASE_URL       ?= postgres://postgres@127.0.0.1:5432/taskchat?sslmode=disable
DATA_DIR           ?= ./data
CORS_ORIGINS       ?= http://localhost:3000
LOG_FORMAT         ?= text
USER_ID            ?= dev-user
TESTFLAGS          ?=
LOADFLAGS          ?=

export DATABASE_URL DATA_DIR CORS_ORIGINS LOG_FORMAT

GO ?= go

.PHONY: run test lint deploy-check schema schema-diff token build load

## run: create the database if missing, apply the schema, serve the API and
## the console (chatd) in development mode: on 127.0.0.1:8080 unless
## HTTP_ADDR says otherwise; its log prints a URL that opens the console
run: schema
	DEV_MODE=true $(GO) run ./cmd/chatd

## test: every test, against the machine's Postgres (TEST_DATABASE_URL to point elsewhere)
test:
	$(GO) test -count=1 $(TESTFLAGS) ./...

## lint: formatting, vet and golangci-lint (pinned in go.mod as a tool; .golangci.yml)
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool golangci-lint run ./...

## deploy-check: validate docker-compose.yml and render the Kubernetes manifests offline
deploy-check:
	docker-compose config -q
	kubectl kustomize deployments/k8s > /dev/null

## schema: apply schema/*.pg.hcl to DATABASE_URL (creating the database if missing)
schema:
	$(GO) run ./cmd/chatctl schema apply --create-database

## schema-diff: print what `make schema` would change
schema-diff:
	$(GO) run ./cmd/chatctl schema diff

## token: print a development token for USER_ID, creating the user row,
## signed with BETTER_AUTH_SECRET or else the secret make run generated
token:
	@secret="$${BETTER_AUTH_SECRET:-$$(cat $(DATA_DIR)/dev-auth-secret 2>/dev/null)}"; \
	if [ -z "$$secret" ]; then echo "make token: set BETTER_AUTH_SECRET, or start make run once: it generates $(DATA_DIR)/dev-auth-secret" >&2; exit 1; fi; \
	BETTER_AUTH_SECRET="$$secret" $(GO) run ./cmd/chatctl token --user-id $(USER_ID) --create-user

## build: all binaries into ./bin
build:
	CGO_ENABLED=0 $(GO) build -o bin/ ./cmd/...

## load: measure the chat pipeline end to end against its database-only
## baseline (cmd/chatload; a fresh database on DATABASE_URL's server, embedded
## NATS unless NATS_URL is set); LOADFLAGS="-clients 64 -cpuprofile cpu.out"
load:
	$(GO) run ./cmd/chatload $(LOADFLAGS)
