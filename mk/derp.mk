# DERP (server, codec): libFuzzer targets for the frame codec and HTTP heads.
FUZZ_TARGETS += derp_frame derp_http
