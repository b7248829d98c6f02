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

/*
 * Columns of pooldiag.events, in table order.  Version 1.2 added
 * client_port as the last column; a table (and recent_events()) of 1.1 has
 * the first PGD_EVENT_NCOLUMNS_1_1 of them.
 */
#define PGD_EVENT_NCOLUMNS	12
#define PGD_EVENT_NCOLUMNS_1_1	11

extern void pgd_event_values(const PgdEvent *ev, int64 event_id,
							 Datum *values, bool *nulls);

#endif							/* POOLDIAG_FLUSH_H */
