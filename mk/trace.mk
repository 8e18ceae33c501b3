# Packet-flow tracing (csrc/trace): the C cost benchmark (`make trace-bench`).
$(BUILD_DIR)/release/trace_tap_bench: bench/trace_tap_bench.c $(BUILD_DIR)/release/libspanza.a
	$(CC) $(CSTD) -O2 -g -Icsrc $< $(BUILD_DIR)/release/libspanza.a -lssl -lcrypto -lsodium -lpthread -o $@

.PHONY: trace-bench
trace-bench: $(BUILD_DIR)/release/trace_tap_bench
	$(BUILD_DIR)/release/trace_tap_bench

# libFuzzer: taps with hostile bytes and filters, small wrapping rings.
FUZZ_TARGETS += trace_ring
