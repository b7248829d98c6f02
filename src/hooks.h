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
#include "registry.h"

struct sockaddr;

extern void pgd_event_from_own_session(PgdEvent *event, PgdEventType type,
									   PgdReason reason);
extern void pgd_event_set_client_addr(PgdEvent *event,
									  const struct sockaddr *addr);

/* Why pooldiag closed a session, in words; see pgd_close_explanation(). */
typedef struct PgdCloseText
{
	int			sqlerrcode;
	const char *message;
	char	   *detail;
	const char *hint;
} PgdCloseText;

extern bool pgd_close_explanation(const PgdCloseRequest *request,
								  PgdCloseText *text);

#endif							/* POOLDIAG_HOOKS_H */
