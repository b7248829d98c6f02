/*-------------------------------------------------------------------------
 *
 * capacity.h
 *		Connection capacity: client sessions in use against the slots
 *		max_connections leaves them, their peak, and the saturation check.
 *		See capacity.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_CAPACITY_H
#define POOLDIAG_CAPACITY_H

#include "utils/timestamp.h"

/* A copy of the counters, for pooldiag.get_capacity(). */
typedef struct PgdCapacity
{
	int			max_connections;
	int			reserved_connections;	/* superuser_reserved (+ reserved) */
	int			slots;			/* max_connections - reserved */
	int			in_use;			/* client sessions now */
	int			peak_in_use;	/* most at one moment since peak_since */
	TimestampTz peak_at;		/* when peak_in_use was reached */
	TimestampTz peak_since;		/* server start or last reset */
	uint64		saturation_events;	/* recorded since the server started */
	TimestampTz last_saturation;	/* 0 = none yet */
} PgdCapacity;

extern double pgd_saturation_warning;

extern Size pgd_capacity_shmem_size(void);
extern void pgd_capacity_shmem_init(void);

/* Registry attach and detach: once per session, never per statement. */
extern void pgd_capacity_connect(TimestampTz now);
extern void pgd_capacity_disconnect(void);

extern int	pgd_capacity_slots(void);
extern void pgd_capacity_read(PgdCapacity *capacity);
extern void pgd_capacity_reset_peak(TimestampTz now);

/* A refused connection attempt (hooks.c); atomics only, no PGPROC needed. */
extern void pgd_capacity_count_rejection(uint8 reason);
extern uint64 pgd_capacity_rejections(uint8 reason);

/* The enforcer, once per scan. */
extern void pgd_capacity_check_saturation(TimestampTz now);

#endif							/* POOLDIAG_CAPACITY_H */
