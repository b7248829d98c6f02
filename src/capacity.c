/*-------------------------------------------------------------------------
 *
 * capacity.c
 *		Connection capacity: how many client sessions are in use against
 *		the slots that max_connections leaves to clients, the most that
 *		were in use at one moment, and the saturation event.
 *
 * Counting.  The registry calls pgd_capacity_connect() when a session
 * attaches and pgd_capacity_disconnect() when it detaches: once per session,
 * never per statement.  The counts are atomics in shared memory, written by
 * every backend without a lock: in_use is incremented and decremented;
 * peak and scan_peak only ever grow through compare-and-swap, so a peak is
 * exact (the highest in_use any attach produced), not sampled.  peak_at is
 * stored right after the swap that raised the peak; two attaches racing
 * may leave the time of the lower of two nearly simultaneous peaks.
 *
 * scan_peak is the highest in_use since the enforcer last looked: the
 * enforcer swaps it for 0 at each scan (pgd_capacity_check_saturation), so
 * a burst of connections that comes and goes between two scans still counts
 * as a crossing of pooldiag.saturation_warning.
 *
 * Saturation.  At each scan the enforcer compares the highest use since its
 * previous scan with saturation_warning × slots.  Going from below the mark
 * to at or above it is a crossing.  A crossing records a "saturation" event
 * unless one was recorded less than a minute before; a crossing held back
 * that way is recorded when the minute is over if use is still at or above
 * the mark, and otherwise counted in the next event's "crossings".  The
 * enforcer's private state (above the mark or not, crossings not yet
 * recorded, time of the last event) lives in this file's statics, used only
 * in the enforcer; saturation_events and last_saturation, for the views,
 * are atomics written only by the enforcer.
 *
 * Refused connection attempts are counted here too, by reason
 * (pgd_capacity_count_rejection), from the refused process.
 *
 * Slots are max_connections minus the connections reserved for superusers
 * (and, from 16 on, for pg_use_reserved_connections; see compat.h): what an
 * ordinary client can get.  Sessions of superusers count in in_use too, so
 * in_use can exceed slots.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"

#include "capacity.h"
#include "compat.h"
#include "event_ring.h"

/* pooldiag.saturation_warning; see pooldiag.c. */
double		pgd_saturation_warning = 0.9;

typedef struct PgdCapacityShared
{
	pg_atomic_uint32 in_use;
	pg_atomic_uint32 peak;
	pg_atomic_uint64 peak_at;
	pg_atomic_uint64 peak_since;
	pg_atomic_uint32 scan_peak;
	pg_atomic_uint64 saturation_events;
	pg_atomic_uint64 last_saturation;
	/* Refused attempts by reason, PGD_R_TOO_MANY_CONNECTIONS first. */
	pg_atomic_uint64 rejections[PGD_NUM_REJECTION_REASONS];
} PgdCapacityShared;

static PgdCapacityShared *pgd_capacity = NULL;

/* The enforcer's saturation state; see the header comment. */
#define PGD_SATURATION_INTERVAL_US	(60 * USECS_PER_SEC)
static bool saturation_above = false;
static int64 saturation_crossings = 0;
static TimestampTz saturation_last_event = 0;

Size
pgd_capacity_shmem_size(void)
{
	return MAXALIGN(sizeof(PgdCapacityShared));
}

void
pgd_capacity_shmem_init(void)
{
	bool		found;

	pgd_capacity = ShmemInitStruct("pooldiag capacity",
								   sizeof(PgdCapacityShared), &found);
	if (!found)
	{
		pg_atomic_init_u32(&pgd_capacity->in_use, 0);
		pg_atomic_init_u32(&pgd_capacity->peak, 0);
		pg_atomic_init_u64(&pgd_capacity->peak_at, 0);
		pg_atomic_init_u64(&pgd_capacity->peak_since, (uint64) GetCurrentTimestamp());
		pg_atomic_init_u32(&pgd_capacity->scan_peak, 0);
		pg_atomic_init_u64(&pgd_capacity->saturation_events, 0);
		pg_atomic_init_u64(&pgd_capacity->last_saturation, 0);
		for (int i = 0; i < PGD_NUM_REJECTION_REASONS; i++)
			pg_atomic_init_u64(&pgd_capacity->rejections[i], 0);
	}
}

/* Raise *target to value unless it is there already; true if we did. */
static bool
pgd_atomic_raise_u32(pg_atomic_uint32 *target, uint32 value)
{
	uint32		old = pg_atomic_read_u32(target);

	while (value > old)
	{
		if (pg_atomic_compare_exchange_u32(target, &old, value))
			return true;
	}
	return false;
}

void
pgd_capacity_connect(TimestampTz now)
{
	uint32		n;

	if (pgd_capacity == NULL)
		return;
	n = pg_atomic_add_fetch_u32(&pgd_capacity->in_use, 1);
	if (pgd_atomic_raise_u32(&pgd_capacity->peak, n))
		pg_atomic_write_u64(&pgd_capacity->peak_at, (uint64) now);
	(void) pgd_atomic_raise_u32(&pgd_capacity->scan_peak, n);
}

void
pgd_capacity_disconnect(void)
{
	if (pgd_capacity == NULL)
		return;
	(void) pg_atomic_sub_fetch_u32(&pgd_capacity->in_use, 1);
}

int
pgd_capacity_slots(void)
{
	return Max(MaxConnections - PGD_RESERVED_CONNECTIONS(), 0);
}

void
pgd_capacity_read(PgdCapacity *capacity)
{
	capacity->max_connections = MaxConnections;
	capacity->reserved_connections = PGD_RESERVED_CONNECTIONS();
	capacity->slots = pgd_capacity_slots();
	capacity->in_use = (int) pg_atomic_read_u32(&pgd_capacity->in_use);
	capacity->peak_in_use = (int) pg_atomic_read_u32(&pgd_capacity->peak);
	capacity->peak_at = (TimestampTz) pg_atomic_read_u64(&pgd_capacity->peak_at);
	capacity->peak_since = (TimestampTz) pg_atomic_read_u64(&pgd_capacity->peak_since);
	capacity->saturation_events = pg_atomic_read_u64(&pgd_capacity->saturation_events);
	capacity->last_saturation =
		(TimestampTz) pg_atomic_read_u64(&pgd_capacity->last_saturation);
	/* Read separately: a connect in between may have raised in_use. */
	capacity->peak_in_use = Max(capacity->peak_in_use, capacity->in_use);
}

/* Start the peak over from the sessions in use now. */
void
pgd_capacity_reset_peak(TimestampTz now)
{
	pg_atomic_write_u32(&pgd_capacity->peak, pg_atomic_read_u32(&pgd_capacity->in_use));
	pg_atomic_write_u64(&pgd_capacity->peak_at, (uint64) now);
	pg_atomic_write_u64(&pgd_capacity->peak_since, (uint64) now);
}

/*
 * Refused connection attempts, counted in the refused process itself from
 * the error-log hook, next to its rejected event: that process may have no
 * PGPROC yet, so only atomics are used.  Unlike the events, the counts are
 * never folded, dropped or deleted: they are what a monitoring system
 * scrapes as a counter.
 */
void
pgd_capacity_count_rejection(uint8 reason)
{
	if (pgd_capacity == NULL || reason < PGD_R_TOO_MANY_CONNECTIONS ||
		reason >= PGD_R_TOO_MANY_CONNECTIONS + PGD_NUM_REJECTION_REASONS)
		return;
	pg_atomic_fetch_add_u64(&pgd_capacity->rejections[reason - PGD_R_TOO_MANY_CONNECTIONS], 1);
}

uint64
pgd_capacity_rejections(uint8 reason)
{
	if (reason < PGD_R_TOO_MANY_CONNECTIONS ||
		reason >= PGD_R_TOO_MANY_CONNECTIONS + PGD_NUM_REJECTION_REASONS)
		return 0;
	return pg_atomic_read_u64(&pgd_capacity->rejections[reason - PGD_R_TOO_MANY_CONNECTIONS]);
}

/* The number of sessions at which use reaches saturation_warning. */
static int
pgd_saturation_mark(int slots)
{
	/* The epsilon keeps 0.9 × 20 at 18 despite binary fractions. */
	return Max((int) ceil(pgd_saturation_warning * slots - 1e-9), 1);
}

void
pgd_capacity_check_saturation(TimestampTz now)
{
	int			slots = pgd_capacity_slots();
	uint32		seen;
	uint32		in_use;
	int			mark;
	bool		crossed;

	/*
	 * Swap first, then read in_use: an attach after the swap raises the new
	 * scan_peak, one before it is in what the swap returned.
	 */
	seen = pg_atomic_exchange_u32(&pgd_capacity->scan_peak, 0);
	in_use = pg_atomic_read_u32(&pgd_capacity->in_use);
	seen = Max(seen, in_use);

	if (pgd_saturation_warning <= 0 || slots <= 0)
	{
		saturation_above = false;
		saturation_crossings = 0;
		return;
	}
	mark = pgd_saturation_mark(slots);
	crossed = !saturation_above && seen >= (uint32) mark;
	if (crossed)
		saturation_crossings++;
	saturation_above = in_use >= (uint32) mark;

	if (saturation_crossings > 0 && (crossed || saturation_above) &&
		(saturation_last_event == 0 ||
		 now - saturation_last_event >= PGD_SATURATION_INTERVAL_US))
	{
		PgdEvent	event;

		memset(&event, 0, sizeof(event));
		event.type = PGD_EV_SATURATION;
		event.reason = PGD_R_NONE;
		event.event_time = now;
		event.detail[PGD_D_SATURATION_IN_USE] = seen;
		event.detail[PGD_D_SATURATION_SLOTS] = slots;
		event.detail[PGD_D_SATURATION_MARK] = mark;
		event.detail[PGD_D_SATURATION_CROSSINGS] = saturation_crossings;
		pgd_ring_append(&event);

		saturation_crossings = 0;
		saturation_last_event = now;
		pg_atomic_fetch_add_u64(&pgd_capacity->saturation_events, 1);
		pg_atomic_write_u64(&pgd_capacity->last_saturation, (uint64) now);
	}
}
