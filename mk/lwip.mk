# lwIP, compiled from Debian's source package (scripts/fetch-lwip.sh fetches
# and checks it into $(CACHE_DIR)/lwip, never committed, and applies Spanza's
# patches from scripts/lwip-patches) with csrc/netstack's lwipopts.h, into
# the archive of each flavour.
LWIP_CACHE := $(CACHE_DIR)/lwip
LWIP_DIR := $(LWIP_CACHE)/lwip-2.1.3
LWIP_STAMP := $(LWIP_DIR)/.spanza-ok
LWIP_FILES := \
	core/init.c core/def.c core/inet_chksum.c core/ip.c core/mem.c core/memp.c \
	core/netif.c core/pbuf.c core/raw.c core/stats.c core/tcp.c core/tcp_in.c \
	core/tcp_out.c core/tcp_recovery.c core/timeouts.c core/udp.c \
	core/ipv4/icmp.c core/ipv4/ip4.c core/ipv4/ip4_addr.c core/ipv4/ip4_frag.c \
	core/ipv6/icmp6.c core/ipv6/ip6.c core/ipv6/ip6_addr.c core/ipv6/ip6_frag.c core/ipv6/nd6.c
LWIP_INC := -Icsrc/netstack -I$(LWIP_DIR)/src/include
# lwIP's own code is not ours to rewrite: warnings stay visible but do not
# fail the build. Our csrc/netstack code keeps the strict flags.
LWIP_CFLAGS := $(CSTD) -fPIC -fvisibility=hidden -MMD -MP -Icsrc $(LWIP_INC) \
	-Wall -Wno-unused-parameter -Wno-unused-variable -Wno-address-of-packed-member
LWIP_CFLAGS_fuzzlib := -DNS_ASSERT_ABORT

# The patches and the pinned hash of the patched tree rebuild the tree.
LWIP_PATCHES := $(sort $(wildcard scripts/lwip-patches/*))
$(LWIP_STAMP): scripts/fetch-lwip.sh $(LWIP_PATCHES)
	bash scripts/fetch-lwip.sh $(LWIP_CACHE)

# The sources appear with the stamp.
$(addprefix $(LWIP_DIR)/src/,$(LWIP_FILES)): | $(LWIP_STAMP)
	@test -f $@

define lwip_flavour
LWIP_OBJS_$(1) := $$(patsubst %.c,$(BUILD_DIR)/$(1)/lwip/%.o,$$(LWIP_FILES))
# The stamp is a real prerequisite: make stats the sources before the
# stamp's recipe re-extracts them, so a changed patch rebuilds through it.
$(BUILD_DIR)/$(1)/lwip/%.o: $$(LWIP_DIR)/src/%.c $$(LWIP_STAMP) | $$(DEPS)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LWIP_CFLAGS) $$($(1)_CFLAGS) $$(LWIP_CFLAGS_$(1)) -c $$< -o $$@
EXTRA_OBJS_$(1) += $$(LWIP_OBJS_$(1))
-include $$(LWIP_OBJS_$(1):.o=.d)
# Our netstack sources include lwIP's headers.
$(BUILD_DIR)/$(1)/obj/csrc/netstack/%.o: EXTRA_CFLAGS += $$(LWIP_INC) $$(LWIP_CFLAGS_$(1))
$$(patsubst %.c,$(BUILD_DIR)/$(1)/obj/%.o,$$(filter csrc/netstack/%,$$(CSRCS))): $$(LWIP_STAMP)
endef
$(eval $(call lwip_flavour,release))
$(eval $(call lwip_flavour,sanitize))
$(eval $(call lwip_flavour,fuzzlib))
$(BUILD_DIR)/fuzzlib/lwip/%.o: CC := clang

FUZZ_TARGETS += ns_input

# bench/ns_bench.c: raw lwIP TCP throughput on a memory wire or two devices
# (bench/netstack_bench.py builds and runs it).
$(BUILD_DIR)/release/ns_bench: bench/ns_bench.c $(BUILD_DIR)/release/libspanza.a
	$(CC) $(CSTD) $(WARN) -O2 -g -Icsrc $(LWIP_INC) $< $(BUILD_DIR)/release/libspanza.a -lssl -lcrypto -lsodium -lpthread -o $@
