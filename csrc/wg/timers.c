/* Per-peer protocol timers (spec section 5; kernel timers.c, Go timers.go).
 * A timer is a deadline in now_ms; wg_device_tick runs the due ones. The
 * device keeps a lower bound of all deadlines (dev->next_deadline) that is
 * lowered whenever a timer is armed earlier and recomputed by the tick.
 *
 * The timers of a peer (struct wg_timers; constants in wg/messages.h;
 * jitter = 0..WG_REKEY_TIMEOUT_JITTER_MAX-1 ms, drawn per arming):
 *
 * retransmit_handshake
 *   armed:    an initiation was sent (wg_timers_handshake_initiated),
 *             in WG_REKEY_TIMEOUT + jitter (5 s)
 *   stopped:  the handshake completed (wg_timers_handshake_complete)
 *   fires:    no response in time
 *   does:     sends a new initiation; once WG_MAX_TIMER_HANDSHAKES (18 =
 *             WG_REKEY_ATTEMPT_TIME / WG_REKEY_TIMEOUT) retries went
 *             unanswered, gives up: drops the staged packets, stops
 *             send_keepalive and arms zero_key_material
 * send_keepalive
 *   armed:    a data packet was received (wg_timers_data_received), in
 *             WG_KEEPALIVE_TIMEOUT (10 s), unless pending (then once more
 *             after it: need_another_keepalive)
 *   stopped:  any authenticated packet was sent (..._packet_sent)
 *   fires:    we had nothing to send back
 *   does:     sends a keepalive (an empty data packet)
 * new_handshake
 *   armed:    a data packet was sent (wg_timers_data_sent), in
 *             WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT + jitter (15 s),
 *             unless pending
 *   stopped:  any authenticated packet was received (..._packet_received)
 *   fires:    the peer stayed silent after our data
 *   does:     sends a new initiation (the session may be dead)
 * zero_key_material
 *   armed:    a session was derived (wg_timers_session_derived), in
 *             WG_ZERO_KEY_MATERIAL_TIME (3 * WG_REJECT_AFTER_TIME, 540 s);
 *             also when retransmit_handshake gives up, unless pending
 *   fires:    no new session for that long
 *   does:     wipes the handshake and all keypairs of the peer
 * persistent_keepalive
 *   armed:    any authenticated packet was sent or received
 *             (..._packet_traversal), in the peer's persistent keepalive
 *             interval (UAPI persistent_keepalive_interval, s), if set
 *   fires:    nothing went either way for that long
 *   does:     sends a keepalive (keeps NAT and relay mappings alive)
 *
 * Rekeying by age and message count (WG_REKEY_AFTER_TIME/MESSAGES,
 * WG_REJECT_AFTER_*) is not a timer: send.c and receive.c check the
 * keypair's age and counter on each packet, as the kernel does. */
#include "base/log.h"
#include "wg/wg_internal.h"

static void arm(wg_device *dev, uint64_t *timer, uint64_t when)
{
	*timer = when;
	if (when < dev->next_deadline)
		dev->next_deadline = when;
}

static bool pending(uint64_t timer) { return timer != WG_TIMER_OFF; }

static uint64_t jitter(wg_device *dev)
{
	uint8_t b[2];
	wg_dev_jitter_random(dev, b, sizeof(b));
	return (uint64_t)((b[0] | b[1] << 8) % WG_REKEY_TIMEOUT_JITTER_MAX);
}

void wg_timers_init(wg_peer *peer)
{
	struct wg_timers *t = &peer->timers;
	t->retransmit_handshake = t->send_keepalive = t->new_handshake = WG_TIMER_OFF;
	t->zero_key_material = t->persistent_keepalive = WG_TIMER_OFF;
	t->handshake_attempts = 0;
	t->need_another_keepalive = t->sent_lastminute_handshake = false;
}

void wg_timers_stop(wg_peer *peer) { wg_timers_init(peer); }

/* After sending a packet with payload: expect an answer (or a keepalive)
 * within KEEPALIVE + REKEY_TIMEOUT, else handshake anew. */
void wg_timers_data_sent(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (!pending(peer->timers.new_handshake))
		arm(dev, &peer->timers.new_handshake, now_ms + WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT + jitter(dev));
}

/* After receiving a packet with payload: answer with a keepalive unless we
 * send something ourselves within KEEPALIVE_TIMEOUT. */
void wg_timers_data_received(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (!pending(peer->timers.send_keepalive))
		arm(dev, &peer->timers.send_keepalive, now_ms + WG_KEEPALIVE_TIMEOUT);
	else
		peer->timers.need_another_keepalive = true;
}

void wg_timers_any_authenticated_packet_sent(wg_peer *peer) { peer->timers.send_keepalive = WG_TIMER_OFF; }

void wg_timers_any_authenticated_packet_received(wg_peer *peer) { peer->timers.new_handshake = WG_TIMER_OFF; }

void wg_timers_handshake_initiated(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	arm(dev, &peer->timers.retransmit_handshake, now_ms + WG_REKEY_TIMEOUT + jitter(dev));
}

void wg_timers_handshake_complete(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	peer->timers.retransmit_handshake = WG_TIMER_OFF;
	peer->timers.handshake_attempts = 0;
	peer->timers.sent_lastminute_handshake = false;
	peer->last_handshake_wall_ns = wg_dev_wall_ns(dev);
	peer->last_handshake_ms = now_ms;
	peer->handshakes_completed++;
	dev->stats.handshakes_completed++;
}

void wg_timers_session_derived(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	arm(dev, &peer->timers.zero_key_material, now_ms + WG_ZERO_KEY_MATERIAL_TIME);
}

void wg_timers_any_authenticated_packet_traversal(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (peer->keepalive)
		arm(dev, &peer->timers.persistent_keepalive, now_ms + (uint64_t)peer->keepalive * WG_MS_PER_S);
}

static void expired_retransmit_handshake(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (peer->timers.handshake_attempts > WG_MAX_TIMER_HANDSHAKES) {
		spz_log(SPZ_LOG_DEBUG, "wg", "handshake did not complete after %u initiations, giving up",
			peer->timers.handshake_attempts + 1);
		peer->timers.send_keepalive = WG_TIMER_OFF;
		wg_staged_purge(dev, peer, WG_DROP_HANDSHAKE_GAVE_UP);
		/* Nothing can be sent for now: let the keys die in a while. */
		if (!pending(peer->timers.zero_key_material))
			arm(dev, &peer->timers.zero_key_material, now_ms + WG_ZERO_KEY_MATERIAL_TIME);
		return;
	}
	peer->timers.handshake_attempts++;
	wg_send_handshake_initiation(dev, peer, now_ms, true);
}

static void expired_send_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	wg_send_keepalive(dev, peer, now_ms);
	if (peer->timers.need_another_keepalive) {
		peer->timers.need_another_keepalive = false;
		arm(dev, &peer->timers.send_keepalive, now_ms + WG_KEEPALIVE_TIMEOUT);
	}
}

static void expired_new_handshake(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	spz_log(SPZ_LOG_DEBUG, "wg", "no reply to data for %llu ms, new handshake",
		(unsigned long long)(WG_KEEPALIVE_TIMEOUT + WG_REKEY_TIMEOUT));
	wg_send_handshake_initiation(dev, peer, now_ms, false);
}

static void expired_zero_key_material(wg_device *dev, wg_peer *peer)
{
	wg_noise_handshake_clear(dev, peer);
	wg_noise_keypairs_clear(dev, peer);
}

static void expired_persistent_keepalive(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	if (peer->keepalive)
		wg_send_keepalive(dev, peer, now_ms);
}

uint64_t wg_timers_next(const wg_peer *peer)
{
	const struct wg_timers *t = &peer->timers;
	uint64_t m = t->retransmit_handshake;
	if (t->send_keepalive < m)
		m = t->send_keepalive;
	if (t->new_handshake < m)
		m = t->new_handshake;
	if (t->zero_key_material < m)
		m = t->zero_key_material;
	if (t->persistent_keepalive < m)
		m = t->persistent_keepalive;
	return m;
}

/* Each due timer is disarmed before its action runs (the action may re-arm it). */
static bool take(uint64_t *timer, uint64_t now_ms)
{
	if (*timer > now_ms)
		return false;
	*timer = WG_TIMER_OFF;
	return true;
}

uint64_t wg_timers_run(wg_device *dev, wg_peer *peer, uint64_t now_ms)
{
	struct wg_timers *t = &peer->timers;
	if (take(&t->retransmit_handshake, now_ms))
		expired_retransmit_handshake(dev, peer, now_ms);
	if (take(&t->send_keepalive, now_ms))
		expired_send_keepalive(dev, peer, now_ms);
	if (take(&t->new_handshake, now_ms))
		expired_new_handshake(dev, peer, now_ms);
	if (take(&t->zero_key_material, now_ms))
		expired_zero_key_material(dev, peer);
	if (take(&t->persistent_keepalive, now_ms))
		expired_persistent_keepalive(dev, peer, now_ms);
	return wg_timers_next(peer);
}
