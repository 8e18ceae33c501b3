# Devices with I/O (csrc/device/): a libFuzzer target for the packet ring.
FUZZ_TARGETS += dev_queue
