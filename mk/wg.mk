# WireGuard core (csrc/wg, csrc/crypto): fuzz targets and the benchmark.
FUZZ_TARGETS += wg_datagram wg_uapi
# wg_datagram memoises X25519 and restores a post-handshake snapshot per
# input (see its header; wg_rl_allow is wrapped to know when the snapshot's
# ratelimiter slots must be copied back).
# Its BLAKE2s (tests/fuzz/blake2s_ref.c) and the memo (tests/fuzz/memo.c)
# are built apart, optimised and uninstrumented: they are not the code
# under test.
FUZZ_LDFLAGS_wg_datagram := -Wl,--wrap=spz_x25519 -Wl,--wrap=spz_x25519_public \
	-Wl,--wrap=__sanitizer_cov_8bit_counters_init -Wl,--wrap=wg_rl_allow -Wl,--wrap=spz_kdf -Wl,--wrap=spz_hash -Wl,--wrap=spz_mac \
	$(BUILD_DIR)/fuzz/blake2s_ref.o $(BUILD_DIR)/fuzz/memo.o
$(BUILD_DIR)/fuzz/wg_datagram: $(BUILD_DIR)/fuzz/blake2s_ref.o $(BUILD_DIR)/fuzz/memo.o
# wg_uapi memoises X25519 too (tests/fuzz/x25519_memo.h).
FUZZ_LDFLAGS_wg_uapi := -Wl,--wrap=spz_x25519 -Wl,--wrap=spz_x25519_public $(BUILD_DIR)/fuzz/memo.o
$(BUILD_DIR)/fuzz/wg_uapi: $(BUILD_DIR)/fuzz/memo.o

# bench/wg_bench.c: handshakes per second and transport throughput through
# the core, beside a raw EVP ChaCha20-Poly1305 loop (`make wg-bench`).
$(BUILD_DIR)/release/wg_bench: bench/wg_bench.c $(BUILD_DIR)/release/libspanza.a
	$(CC) $(CSTD) -O2 -g -Icsrc $< $(BUILD_DIR)/release/libspanza.a -lssl -lcrypto -lsodium -lpthread -o $@

.PHONY: wg-bench
wg-bench: $(BUILD_DIR)/release/wg_bench
	$(BUILD_DIR)/release/wg_bench
