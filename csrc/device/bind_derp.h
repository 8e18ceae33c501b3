/* dev_derp: the DERP bind of a device. The device's datagrams go straight
 * into a DERP client (no UDP hop): a peer whose endpoint is
 * {WG_AF_DERP, key} ("derp:<hex>" in UAPI text) is reached by sending to
 * that DERP key, and a packet arriving from DERP key K is given to the core
 * with the endpoint {WG_AF_DERP, K}, so roaming works by DERP key as it
 * does by address for UDP. A device may have both binds; each peer's
 * endpoint family picks one. Loop thread only. */
#ifndef SPANZA_DEV_BIND_DERP_H
#define SPANZA_DEV_BIND_DERP_H

#include <stdint.h>

#include "derp/client/client.h"
#include "device/bind_derp_py.h"
#include "device/device.h"

/* Creates a DERP client for url with the private key priv (the device's
 * DERP identity) and attaches it as the device's DERP bind, replacing (and
 * closing) the one before. 0, or -errno with a message in err:
 * -EINVAL (bad URL/key/option), -ESHUTDOWN (device closed), -ENOMEM. */
int dev_derp_attach(dev_device *d, const char *url, const uint8_t priv[32], const struct derp_client_opts *opts,
		    char *err, size_t errlen);
/* The device's DERP client, or NULL when it has no DERP bind. */
derp_client_t *dev_derp_client(dev_device *d);

#endif
