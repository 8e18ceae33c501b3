# Tailscale's derper and a driver of its Go DERP client, built from the pinned
# tailscale.com module (tests/interop/go/go.mod); cached under $(CACHE_DIR)/go.
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
GO_DIR := tests/interop/go
GO_BIN := $(CACHE_DIR)/go/bin
GO_ENV := GOPATH=$(CURDIR)/.cache/go/path GOCACHE=$(CURDIR)/.cache/go/build GOTOOLCHAIN=local GOFLAGS=-modcacherw
GO_HELPERS := $(GO_BIN)/derper $(GO_BIN)/derpclient

$(GO_HELPERS) &: $(GO_DIR)/go.mod $(GO_DIR)/go.sum $(wildcard $(GO_DIR)/*/*.go)
	@mkdir -p $(GO_BIN)
	cd $(GO_DIR) && $(GO_ENV) go build -trimpath -o $(CURDIR)/$(GO_BIN)/ ./derpclient tailscale.com/cmd/derper
	@touch $(GO_HELPERS)

.PHONY: go-helpers
go-helpers: $(GO_HELPERS)
TEST_DEPS += go-helpers
