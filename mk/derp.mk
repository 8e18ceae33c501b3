# DERP (server, codec): libFuzzer targets for the frame codec and HTTP heads.
FUZZ_TARGETS += derp_frame derp_http
# Key files and key texts a relay reads (mesh key, allowlist, JSON config).
FUZZ_TARGETS += derp_keyfile
# The server's handshake and whole connections (a real server on a runtime,
# connections over socketpairs: tests/fuzz/derp_server_harness.h).
FUZZ_TARGETS += derp_server_hs derp_server_stream
$(BUILD_DIR)/fuzz/derp_server_hs $(BUILD_DIR)/fuzz/derp_server_stream: tests/fuzz/derp_server_harness.h
FUZZ_LDFLAGS_derp_server_hs := -Wl,--wrap=crypto_box_easy -Wl,--wrap=crypto_box_open_easy \
	-Wl,--wrap=rt_fd_add -Wl,--wrap=rt_fd_mod
FUZZ_LDFLAGS_derp_server_stream := $(FUZZ_LDFLAGS_derp_server_hs)
