/*-------------------------------------------------------------------------
 *
 * flush.h
 *		The row format of pooldiag.events, shared by the worker's writes
 *		and pooldiag.recent_events().  See flush.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_FLUSH_H
#define POOLDIAG_FLUSH_H

#include "event_ring.h"

/* Columns of pooldiag.events, in table order. */
#define PGD_EVENT_NCOLUMNS	11

extern void pgd_event_values(const PgdEvent *ev, int64 event_id,
							 Datum *values, bool *nulls);

#endif							/* POOLDIAG_FLUSH_H */
