/*-------------------------------------------------------------------------
 *
 * hooks.h
 *		Backend hooks and filling events with a session's identity.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_HOOKS_H
#define POOLDIAG_HOOKS_H

#include "event_ring.h"

struct sockaddr;

extern void pgd_event_from_own_session(PgdEvent *event, PgdEventType type,
									   PgdReason reason);
extern void pgd_event_set_client_addr(PgdEvent *event,
									  const struct sockaddr *addr);

#endif							/* POOLDIAG_HOOKS_H */
