# DERP client: libFuzzer target for the client's protocol core.
FUZZ_TARGETS += derp_client
