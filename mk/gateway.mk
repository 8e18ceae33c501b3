# The gateway (csrc/gateway/): a libFuzzer target for its DERP-side input.
FUZZ_TARGETS += gw_derp_input
$(BUILD_DIR)/fuzz/gw_derp_input: tests/fuzz/rt_park.h
