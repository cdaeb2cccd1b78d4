# stompgate: `make test` is the one command to check everything. It installs
# and starts the real peers the end-to-end tests need (scripts/test-deps.sh:
# apt packages, RabbitMQ with Web-STOMP on 127.0.0.1, node modules), then runs
# the linters and the whole test suite with the race detector.

GO            ?= go
GOFMT         ?= gofmt
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PKGS          := ./...
TEST_TIMEOUT  := 20m
# Missing peers fail end-to-end tests instead of skipping them.
E2E_ENV       := STOMPGATE_E2E=require
GO_TEST_FLAGS := -race -count=1 -timeout $(TEST_TIMEOUT)

.PHONY: test test-unit peers peers-status peers-stop peers-restart fmt-check vet staticcheck lint bench-check

test: peers lint image-check deploy-check
	$(E2E_ENV) $(GO) test $(GO_TEST_FLAGS) $(PKGS)

lint: fmt-check vet staticcheck bench-check

# Only the Go tests, without installing or starting anything: end-to-end
# tests whose peers are missing skip.
test-unit:
	$(GO) test $(GO_TEST_FLAGS) $(PKGS)

peers:
	bash scripts/test-deps.sh

peers-status:
	bash scripts/test-deps.sh status

peers-stop:
	bash scripts/test-deps.sh stop

peers-restart:
	bash scripts/test-deps.sh restart

fmt-check:
	@out="$$($(GOFMT) -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt: these files need formatting (gofmt -w):"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

staticcheck:
	$(GO) run $(STATICCHECK) $(PKGS)

# bench/ is its own module, so the targets above (./... at the root) do not
# see it: this keeps it formatted, vetted, statically checked, building and
# passing its own unit tests (a few seconds; none needs peers) so that it
# cannot rot unseen.
bench-check:
	@out="$$(cd bench && $(GOFMT) -l .)"; \
	if [ -n "$$out" ]; then echo "gofmt: these files in bench/ need formatting (gofmt -w):"; echo "$$out"; exit 1; fi
	cd bench && $(GO) vet $(PKGS)
	cd bench && $(GO) run $(STATICCHECK) $(PKGS)
	cd bench && bin="$$(mktemp -d)" && trap 'rm -rf "$$bin"' EXIT && $(GO) build -o "$$bin/" ./cmd/...
	cd bench && $(GO) test $(GO_TEST_FLAGS) $(PKGS)

# The container image's binary, proven without a Docker engine: builds it with
# the Dockerfile's own `go build` line (read from the Dockerfile), checks it is
# static, then runs it alone in an empty root as UID 65532 with only
# STOMPGATE_UPSTREAM_URL set. VERSION=... overrides `git describe`.
.PHONY: image-check
image-check:
	IMAGE_CHECK_EPHEMERAL=1 bash scripts/image-check.sh

# The deployment examples: the YAML parses and matches docs/deploy/README.md,
# the sidecar's variables pass `config validate`, nginx accepts the snippet
# and carries a STOMP session to `stompgate demo`, the stop order drains.
.PHONY: deploy-check
deploy-check:
	bash docs/deploy/check.sh

# Soak test (not part of `make test`; bench/cmd/soak): 9,900 STOMP sessions
# through stompgate to the Spring-semantics test broker, 1 s heart-beats on
# both hops, held 10 minutes; prints a markdown report and also writes it to
# bench/results/soak.md. SOAK_QUICK=1 runs 500 sessions × 60 s (report on
# stdout only); SOAK_FLAGS passes flags (cd bench && go run ./cmd/soak -h).
.PHONY: soak
soak:
	cd bench && $(GO) run ./cmd/soak $(SOAK_FLAGS)

# Proxy benchmark against nginx and no proxy (bench/cmd/stompbench): about 7
# minutes on 2 CPUs, prints its tables and also writes them to
# bench/results/bench.md. BENCH_QUICK=1 is a 1-minute development run (tables
# on stdout only); BENCH_FLAGS passes flags
# (cd bench && go run ./cmd/stompbench run -h).
.PHONY: bench
bench:
	bash bench/deps.sh
	cd bench && $(GO) run ./cmd/stompbench run -command "make bench$(if $(BENCH_QUICK), BENCH_QUICK=1)$(if $(BENCH_FLAGS), BENCH_FLAGS='$(BENCH_FLAGS)')" $(if $(BENCH_QUICK),-quick,-report results/bench.md) $(BENCH_FLAGS)
