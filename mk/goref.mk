# The Go reference of the relay benchmarks (bench/goref: wireguard-go + gVisor
# netstack + Tailscale's derphttp, the same tailscale.com pin as the Go
# helpers), built like them into .cache/go/bin. `make bench` races it.
GOREF := $(GO_BIN)/goref
$(GOREF): bench/goref/go.mod bench/goref/go.sum bench/goref/main.go
	@mkdir -p $(GO_BIN)
	cd bench/goref && $(GO_ENV) $(GO) build -trimpath -o $(CURDIR)/$(GOREF) .

.PHONY: goref
goref: $(GOREF)
