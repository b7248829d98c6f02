/*-------------------------------------------------------------------------
 *
 * registry.c
 *		The session registry: one shared-memory slot per client backend,
 *		keyed by backend id, holding the session's identity, its checkout
 *		accounting and the policy values it has in effect.
 *
 * Concurrency rules
 * -----------------
 * Only the backend that owns a slot writes its ordinary fields, so writers
 * never contend and take no lock.  Readers (views, the worker) take no lock
 * either; they use the change-count protocol of PgBackendStatus:
 *
 *	 writer:  changecount++ (now odd), write barrier, write fields,
 *			  write barrier, changecount++ (even again)
 *	 reader:  read changecount, read barrier, copy the slot, read barrier,
 *			  read changecount again; retry unless both reads are equal and
 *			  even.
 *
 * Nothing between the two increments can fail or be interrupted, so a slot is
 * never left odd (a backend that dies uncleanly makes the postmaster
 * reinitialise shared memory anyway).  This keeps the per-statement path,
 * pgd_registry_begin_checkout(), at a handful of stores and two barriers.
 *
 * The one field other processes write is drain_pid, an atomic holding the
 * pid a drain request was meant for.  It sits outside the protocol because
 * its writers are not the owner; comparing it with the slot's pid makes a
 * stale request harmless.
 *
 * The session's live state (active, idle in transaction, ...) and its
 * application_name are not duplicated here: core already keeps them in the
 * backend's PgBackendStatus entry, and readers copy them from there with
 * core's own protocol, so pooldiag's "state" is exactly pg_stat_activity's.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/shmem.h"

#include "compat.h"
#include "pooldiag.h"
#include "registry.h"

/*
 * Each slot fills whole cache lines of its own: backends write their slot
 * on every checkout and checkin, and two backends sharing a line would make
 * it bounce between CPUs.  (Shared memory allocations are cache-line
 * aligned.)
 */
typedef union PgdPaddedSlot
{
	PgdSlot		slot;
	char		pad[TYPEALIGN(PG_CACHE_LINE_SIZE, sizeof(PgdSlot))];
} PgdPaddedSlot;

/* The slot array in shared memory; MaxBackends entries. */
static PgdPaddedSlot *pgd_slots = NULL;

/* The current backend's slot, NULL unless it is a tracked session. */
PgdSlot    *pgd_my_slot = NULL;

#define PGD_BEGIN_WRITE(slot) \
	do { \
		(slot)->changecount++; \
		pg_write_barrier(); \
	} while (0)

#define PGD_END_WRITE(slot) \
	do { \
		pg_write_barrier(); \
		(slot)->changecount++; \
		Assert(((slot)->changecount & 1) == 0); \
	} while (0)

int
pgd_registry_size(void)
{
	return MaxBackends;
}

Size
pgd_registry_shmem_size(void)
{
	return mul_size(sizeof(PgdPaddedSlot), pgd_registry_size());
}

void
pgd_registry_shmem_init(void)
{
	bool		found;

	pgd_slots = ShmemInitStruct("pooldiag registry",
								pgd_registry_shmem_size(), &found);
	if (!found)
	{
		memset(pgd_slots, 0, pgd_registry_shmem_size());
		for (int i = 0; i < pgd_registry_size(); i++)
			pg_atomic_init_u32(&pgd_slots[i].slot.drain_pid, 0);
	}
}

PgdSlot *
pgd_registry_slot(int index)
{
	Assert(pgd_slots != NULL && index >= 0 && index < pgd_registry_size());
	return &pgd_slots[index].slot;
}

/*
 * Claim this backend's slot once its session is established.  ready_at is
 * when the session became usable: the start of its first idle period.
 */
void
pgd_registry_attach(TimestampTz ready_at)
{
	int			index = PGD_MY_SLOT_INDEX();
	volatile PgdSlot *slot;

	if (pgd_slots == NULL || !PGD_SLOT_INDEX_VALID(index))
		return;

	slot = &pgd_slots[index].slot;
	PGD_BEGIN_WRITE(slot);
	slot->pid = MyProcPid;
	slot->backend_start = MyStartTimestamp;
	slot->roleid = GetSessionUserId();
	slot->databaseid = MyDatabaseId;
	slot->is_superuser = superuser_arg(GetSessionUserId());
	/* Drawn once, so the session's lifetime stays put across reloads. */
	slot->lifetime_cut = pg_prng_double(&pg_global_prng_state) * pgd_lifetime_jitter;
	slot->beentry = MyBEEntry;
	slot->checkouts = 0;
	slot->checkout_start = 0;
	slot->last_checkin = ready_at;
	slot->hold_time_us = 0;
	slot->idle_time_us = 0;
	PGD_END_WRITE(slot);

	pgd_my_slot = (PgdSlot *) slot;
}

/* Free this backend's slot; called on the way out. */
void
pgd_registry_detach(void)
{
	volatile PgdSlot *slot = pgd_my_slot;

	if (slot == NULL)
		return;
	PGD_BEGIN_WRITE(slot);
	slot->pid = 0;
	slot->beentry = NULL;
	PGD_END_WRITE(slot);
	pgd_my_slot = NULL;
}

/*
 * The session left idle: a checkout starts at 'start', which the caller
 * takes from a timestamp PostgreSQL already has (the statement's start).
 * Per-statement path: no lock, no allocation, no system call.
 */
void
pgd_registry_begin_checkout(TimestampTz start)
{
	volatile PgdSlot *slot = pgd_my_slot;

	PGD_BEGIN_WRITE(slot);
	if (start > slot->last_checkin)
		slot->idle_time_us += start - slot->last_checkin;
	slot->checkout_start = start;
	slot->checkouts++;
	PGD_END_WRITE(slot);
}

/* The session is idle again outside a transaction block. */
void
pgd_registry_end_checkout(TimestampTz end)
{
	volatile PgdSlot *slot = pgd_my_slot;

	PGD_BEGIN_WRITE(slot);
	if (end > slot->checkout_start)
		slot->hold_time_us += end - slot->checkout_start;
	slot->checkout_start = 0;
	slot->last_checkin = end;
	PGD_END_WRITE(slot);
}

void
pgd_registry_publish_policy(const PgdSessionPolicy *policy)
{
	volatile PgdSlot *slot = pgd_my_slot;

	if (slot == NULL)
		return;
	PGD_BEGIN_WRITE(slot);
	memcpy((PgdSessionPolicy *) &slot->policy, policy, sizeof(PgdSessionPolicy));
	PGD_END_WRITE(slot);
}

/*
 * Copy one slot consistently, without core's status fields (has_status is
 * false).  Returns false if the slot is free.  This is all the worker's scan
 * needs for most sessions, so it is kept to one small copy.
 */
bool
pgd_registry_read_slot(int index, PgdSessionSnapshot *snap)
{
	volatile PgdSlot *slot = &pgd_slots[index].slot;

	/* A cheap unsynchronised look first: most slots of a big array are free. */
	if (slot->pid == 0)
		return false;

	for (;;)
	{
		uint32		before = slot->changecount;
		uint32		after;

		pg_read_barrier();
		memcpy(&snap->slot, (PgdSlot *) slot, offsetof(PgdSlot, drain_pid));
		pg_read_barrier();
		after = slot->changecount;
		if (before == after && (before & 1) == 0)
			break;
		/* The owner is mid-update; it finishes within a few instructions. */
		CHECK_FOR_INTERRUPTS();
	}
	if (snap->slot.pid == 0)
		return false;

	snap->index = index;
	snap->has_status = false;
	snap->draining =
		pg_atomic_read_u32(&pgd_slots[index].slot.drain_pid) == (uint32) snap->slot.pid;
	return true;
}

/*
 * Add the fields of core's status entry to a snapshot taken with
 * pgd_registry_read_slot().  Each copy is consistent by itself; a session
 * that ended between the two shows up as a pid mismatch in core's entry and
 * is then reported as gone (false).
 */
bool
pgd_registry_read_status(PgdSessionSnapshot *snap)
{
	volatile PgBackendStatus *be = snap->slot.beentry;

	if (be == NULL)
		return false;

	for (;;)
	{
		int			before;
		int			after;
		int			procpid;

		pgstat_begin_read_activity(be, before);
		procpid = be->st_procpid;
		snap->state = be->st_state;
		snap->state_change = be->st_state_start_timestamp;
		snap->userid = be->st_userid;
		snap->databaseid = be->st_databaseid;
		memcpy(snap->application_name, be->st_appname, NAMEDATALEN);
		memcpy(&snap->client_addr, (SockAddr *) &be->st_clientaddr,
			   sizeof(SockAddr));
		pgstat_end_read_activity(be, after);

		if (pgstat_read_activity_complete(before, after))
		{
			if (procpid != snap->slot.pid)
				return false;
			break;
		}
		CHECK_FOR_INTERRUPTS();
	}
	snap->application_name[NAMEDATALEN - 1] = '\0';
	snap->has_status = true;
	return true;
}

/* Copy one session completely: our slot, then core's status fields. */
bool
pgd_registry_read(int index, PgdSessionSnapshot *snap)
{
	return pgd_registry_read_slot(index, snap) &&
		pgd_registry_read_status(snap);
}
