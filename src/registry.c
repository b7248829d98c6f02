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
 * never contend and take no lock.  Readers (views, the enforcer) take no
 * lock either; they use the change-count protocol of PgBackendStatus:
 *
 *	 writer:  compute every value first; then, inside a critical section,
 *			  changecount++ (now odd), write barrier, store the fields,
 *			  write barrier, changecount++ (even again)
 *	 reader:  read changecount, read barrier, copy the slot, read barrier,
 *			  read changecount again; retry unless both reads are equal and
 *			  even.
 *
 * A slot left odd would make every reader spin forever, so nothing between
 * the two increments may fail or be interrupted: anything that can (catalog
 * look-ups, allocation) happens before the section opens, and the section
 * is a critical section, as core's PGSTAT_BEGIN_WRITE_ACTIVITY is, so that
 * a pending die() or cancel waits until it is closed.  This keeps the
 * per-statement path, pgd_registry_begin_checkout(), at a handful of stores
 * and two barriers.
 *
 * Each session that attaches gets a serial number, unique in this server
 * run (a shared 64-bit counter, taken once per connection).  Requests from
 * other processes (pooldiag.drain(), the enforcer's close reason) live in
 * atomics at the end of the slot, outside the protocol, and name the serial
 * of the session they are meant for.  A later session in the same slot has
 * another serial, even when the kernel gave it the same pid, so a stale
 * request is harmless; attach and detach clear them anyway.
 *
 * Each session also belongs to a pool (pools.c).  Its entry is found when
 * it attaches, and again only if its pool changes, so a checkout touches
 * the pool table through two atomics (busy, peak_busy) and nothing else;
 * its hold time goes into the slot's own histogram (PgdHoldStats), inside
 * the same write section as the rest of the checkin.
 *
 * The client pool a session declares (PgdDeclaredPool, written at connect
 * and whenever one of those settings changes) sits after the requests, in
 * the part of the slot that the enforcer's scan does not copy: only
 * pooldiag.sessions reads it, with its own pass of the same protocol
 * (pgd_registry_read_declared()).
 *
 * The session's live state (active, idle in transaction, ...), its wait
 * event and its application_name are not duplicated here: core already keeps them in the
 * backend's PgBackendStatus entry, and readers copy them from there with
 * core's own protocol.  Core's state is also the authority on busy versus
 * idle; see pgd_registry_read_status().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/proc.h"
#include "storage/shmem.h"

#include "capacity.h"
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

/* The last session serial handed out; see the header comment. */
static pg_atomic_uint64 *pgd_last_serial = NULL;

/* The current backend's slot, NULL unless it is a tracked session. */
PgdSlot    *pgd_my_slot = NULL;

#define PGD_BEGIN_WRITE(slot) \
	do { \
		START_CRIT_SECTION(); \
		(slot)->changecount++; \
		pg_write_barrier(); \
	} while (0)

#define PGD_END_WRITE(slot) \
	do { \
		pg_write_barrier(); \
		(slot)->changecount++; \
		Assert(((slot)->changecount & 1) == 0); \
		END_CRIT_SECTION(); \
	} while (0)

/*
 * The reader's side of the protocol: copy 'len' bytes at 'offset' in the
 * slot, together with the slot's serial, as one consistent read, and return
 * that serial (0: the slot was free).  The owner keeps the count odd only
 * for a few stores inside a critical section, so the loop is short; it
 * stays cancellable all the same.
 */
static uint64
pgd_slot_copy(volatile PgdSlot *slot, size_t offset, size_t len, void *dest)
{
	for (;;)
	{
		uint32		before = slot->changecount;
		uint64		serial;

		pg_read_barrier();
		serial = slot->serial;
		memcpy(dest, (const char *) slot + offset, len);
		pg_read_barrier();
		if (slot->changecount == before && (before & 1) == 0)
			return serial;
		CHECK_FOR_INTERRUPTS();
	}
}

int
pgd_registry_size(void)
{
	return MaxBackends;
}

Size
pgd_registry_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(pg_atomic_uint64)),
					mul_size(sizeof(PgdPaddedSlot), pgd_registry_size()));
}

void
pgd_registry_shmem_init(void)
{
	bool		found;

	pgd_slots = ShmemInitStruct("pooldiag registry",
								mul_size(sizeof(PgdPaddedSlot), pgd_registry_size()),
								&found);
	pgd_last_serial = ShmemInitStruct("pooldiag registry serial",
									  sizeof(pg_atomic_uint64), &found);
	if (!found)
	{
		memset(pgd_slots, 0, mul_size(sizeof(PgdPaddedSlot), pgd_registry_size()));
		for (int i = 0; i < pgd_registry_size(); i++)
		{
			pg_atomic_init_u64(&pgd_slots[i].slot.drain_serial, 0);
			pg_atomic_init_u64(&pgd_slots[i].slot.close_request.serial, 0);
		}
		pg_atomic_init_u64(pgd_last_serial, 0);
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
	Oid			roleid = GetSessionUserId();
	double		lifetime_cut;
	uint64		serial;
	int			pool_index;
	uint32		pool_generation;
	uint32		epoch;

	if (pgd_slots == NULL || !PGD_SLOT_INDEX_VALID(index))
		return;

	/*
	 * Everything is computed before the write section.  (Whether the role
	 * is a superuser is not kept at all: permission checks and exemptions
	 * ask the catalogs at the time they decide, as core does.)
	 */
	/* Drawn once, so the session's lifetime stays put across reloads. */
	lifetime_cut = pg_prng_double(&pg_global_prng_state) * pgd_lifetime_jitter;
	serial = pg_atomic_add_fetch_u64(pgd_last_serial, 1);
	pgd_pool_join(&pool_index, &pool_generation);
	epoch = pgd_pools_epoch();

	slot = &pgd_slots[index].slot;
	/* Requests for the slot's previous session die with it. */
	pg_atomic_write_u64(&pgd_slots[index].slot.drain_serial, 0);
	pg_atomic_write_u64(&pgd_slots[index].slot.close_request.serial, 0);

	PGD_BEGIN_WRITE(slot);
	slot->pid = MyProcPid;
	slot->serial = serial;
	slot->backend_start = MyStartTimestamp;
	slot->roleid = roleid;
	slot->databaseid = MyDatabaseId;
	slot->lifetime_cut = lifetime_cut;
	slot->beentry = MyBEEntry;
	slot->proc = MyProc;
	slot->pool_index = pool_index;
	slot->pool_generation = pool_generation;
	memset((PgdHoldStats *) &slot->hold, 0, sizeof(PgdHoldStats));
	slot->hold.epoch = epoch;
	slot->checkouts = 0;
	slot->checkout_start = 0;
	slot->last_checkin = ready_at;
	slot->hold_time_us = 0;
	slot->idle_time_us = 0;
	PGD_END_WRITE(slot);

	pgd_my_slot = (PgdSlot *) slot;
	pgd_capacity_connect(ready_at);
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
	slot->serial = 0;
	slot->beentry = NULL;
	slot->proc = NULL;
	slot->pool_index = -1;
	memset((PgdDeclaredPool *) &slot->declared, 0, sizeof(PgdDeclaredPool));
	PGD_END_WRITE(slot);
	pg_atomic_write_u64(&pgd_my_slot->drain_serial, 0);
	pg_atomic_write_u64(&pgd_my_slot->close_request.serial, 0);
	pgd_my_slot = NULL;
	pgd_capacity_disconnect();
}

/*
 * The session left idle: a checkout starts at 'start', which the caller
 * takes from a timestamp PostgreSQL already has (the statement's start).
 * Per-statement path: no lock, no allocation, no system call; a string
 * compare to notice a change of pool (whose move takes the pool lock, once).
 */
void
pgd_registry_begin_checkout(TimestampTz start)
{
	volatile PgdSlot *slot = pgd_my_slot;

	if (unlikely(pgd_pool_identity_changed()))
		pgd_pool_rejoin();

	PGD_BEGIN_WRITE(slot);
	if (start > slot->last_checkin)
		slot->idle_time_us += start - slot->last_checkin;
	slot->checkout_start = start;
	slot->checkouts++;
	PGD_END_WRITE(slot);
	pgd_pool_busy_begin();
}

/* The session is idle again outside a transaction block. */
void
pgd_registry_end_checkout(TimestampTz end)
{
	volatile PgdSlot *slot = pgd_my_slot;
	int64		hold_us = end > slot->checkout_start ? end - slot->checkout_start : 0;
	int			bucket = pgd_hold_bucket(hold_us);
	uint32		epoch = pgd_pools_epoch();

	PGD_BEGIN_WRITE(slot);
	slot->hold_time_us += hold_us;
	slot->checkout_start = 0;
	slot->last_checkin = end;
	/* Counts from before a pooldiag.reset() start over. */
	if (unlikely(slot->hold.epoch != epoch))
	{
		memset((PgdHoldStats *) &slot->hold, 0, sizeof(PgdHoldStats));
		slot->hold.epoch = epoch;
	}
	slot->hold.count++;
	slot->hold.sum_us += hold_us;
	if (hold_us > slot->hold.max_us)
		slot->hold.max_us = hold_us;
	slot->hold.buckets[bucket]++;
	PGD_END_WRITE(slot);
	pgd_pool_busy_end();
}

/*
 * The session moved to pool 'index' (-1: it left its pool): its slot counts
 * now belong to the new pool and start over.  The caller holds the pool
 * lock, so no reader sees the counts in both places.
 */
void
pgd_registry_set_pool(int index, uint32 generation)
{
	volatile PgdSlot *slot = pgd_my_slot;

	if (slot == NULL)
		return;
	PGD_BEGIN_WRITE(slot);
	slot->pool_index = index;
	slot->pool_generation = generation;
	memset((PgdHoldStats *) &slot->hold, 0, sizeof(PgdHoldStats));
	slot->hold.epoch = index < 0 ? 0 : pgd_pools_epoch();
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
 * Publish the client pool this session declares.  The caller computed
 * everything (sanitized the strings); the section only copies.
 */
void
pgd_registry_publish_declared(const PgdDeclaredPool *declared)
{
	volatile PgdSlot *slot = pgd_my_slot;
	uint32		instance_hash;

	if (slot == NULL)
		return;
	/* For the enforcer's idle-leak rule, which groups by instance. */
	instance_hash = hash_bytes((const unsigned char *) declared->instance,
							   strlen(declared->instance));
	PGD_BEGIN_WRITE(slot);
	memcpy((PgdDeclaredPool *) &slot->declared, declared, sizeof(PgdDeclaredPool));
	slot->instance_hash = instance_hash;
	PGD_END_WRITE(slot);
}

/*
 * Copy the declared client pool of the session in a snapshot taken with
 * pgd_registry_read_slot(), with the same protocol.  Returns false if the
 * slot holds another session by now (or none).
 */
bool
pgd_registry_read_declared(const PgdSessionSnapshot *snap,
						   PgdDeclaredPool *declared)
{
	volatile PgdSlot *slot = &pgd_slots[snap->index].slot;
	uint64		serial;

	serial = pgd_slot_copy(slot, offsetof(PgdSlot, declared),
						   sizeof(PgdDeclaredPool), declared);
	declared->pool[NAMEDATALEN - 1] = '\0';
	declared->instance[NAMEDATALEN - 1] = '\0';
	return serial == snap->slot.serial;
}

/*
 * The wait event of the session in a snapshot, as pg_stat_activity reads
 * it: one 32-bit load from its PGPROC, which core writes without a lock.
 * 0 (no wait) if the PGPROC serves another process by now.
 */
uint32
pgd_registry_wait_event_info(const PgdSessionSnapshot *snap)
{
	volatile PGPROC *proc = snap->slot.proc;
	uint32		info;

	if (proc == NULL)
		return 0;
	info = proc->wait_event_info;
	pg_read_barrier();
	return proc->pid == snap->slot.pid ? info : 0;
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

	pgd_slot_copy(slot, 0, offsetof(PgdSlot, drain_serial), &snap->slot);
	if (snap->slot.pid == 0)
		return false;

	snap->index = index;
	snap->has_status = false;
	snap->draining =
		pg_atomic_read_u64(&pgd_slots[index].slot.drain_serial) == snap->slot.serial;
	return true;
}

/*
 * Core's state is the authority on whether a session is busy or idle: it is
 * set as a backend reads a message and again right before ReadyForQuery,
 * while our hooks see a checkout only from the executor or utility hook on
 * and end it in the transaction callback.  Reconcile the two in a snapshot
 * (never in shared memory):
 *
 *	 - busy in core since after our last checkin, but no checkout in our
 *	   slot: the statement is still in parse analysis or planning (maybe
 *	   waiting for a lock there).  It is checked out since core says so.
 *	 - idle in core since after our checkout started: the checkout is over,
 *	   whatever our transaction-block bookkeeping believed.
 *
 * With track_activities = off core says STATE_DISABLED and nothing can be
 * reconciled; policy.c then refuses to enforce (see pgd_state_known()).
 */
static void
pgd_reconcile_with_core(PgdSessionSnapshot *snap)
{
	PgdSlot    *slot = &snap->slot;

	switch (snap->state)
	{
		case STATE_RUNNING:
		case STATE_FASTPATH:
		case STATE_IDLEINTRANSACTION:
		case STATE_IDLEINTRANSACTION_ABORTED:
			if (slot->checkout_start == 0 &&
				snap->state_change >= slot->last_checkin)
			{
				slot->checkout_start = snap->state_change;
				slot->idle_time_us += snap->state_change - slot->last_checkin;
				slot->checkouts++;
			}
			break;
		case STATE_IDLE:
			if (slot->checkout_start != 0 &&
				snap->state_change > slot->checkout_start)
			{
				slot->hold_time_us += snap->state_change - slot->checkout_start;
				slot->checkout_start = 0;
				slot->last_checkin = snap->state_change;
			}
			break;
		default:
			break;
	}
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

	pgd_reconcile_with_core(snap);
	return true;
}

/*
 * pooldiag.drain(): ask for the session with this serial to be closed once
 * it is idle.  Returns false if the slot holds another session by now.
 *
 * Several drain() calls may race with each other and with the slot changing
 * hands, so the request is never stored blindly: a caller whose snapshot is
 * stale (its session has ended, and the slot's next session may have been
 * marked by another drain() meanwhile) must not overwrite that mark.  The
 * serial is installed by compare-and-exchange, only while the slot holds
 * that session, replacing whatever is there (0, or a stale serial: neither
 * is a live request).
 */
bool
pgd_registry_request_drain(int index, uint64 serial)
{
	PgdSlot    *slot = pgd_registry_slot(index);
	uint64		current = pg_atomic_read_u64(&slot->drain_serial);

	for (;;)
	{
		pg_memory_barrier();
		if (slot->serial != serial)
			return false;
		if (current == serial)
			break;
		/* On failure 'current' is reloaded; look at the slot again. */
		if (pg_atomic_compare_exchange_u64(&slot->drain_serial, &current, serial))
			break;
	}
	pg_memory_barrier();
	/* Attach clears the request; a session that came since must not keep it. */
	if (slot->serial != serial)
	{
		uint64		expected = serial;

		pg_atomic_compare_exchange_u64(&slot->drain_serial, &expected, 0);
		return false;
	}
	return true;
}

/*
 * The enforcer: record why it is about to close the session with this
 * serial.  Fields first, serial last; see PgdCloseRequest.
 */
void
pgd_registry_post_close_request(int index, uint64 serial, PgdReason reason,
								int64 idle_us, int64 age_us, int32 limit_ms,
								double lifetime_cut)
{
	PgdCloseRequest *request = &pgd_registry_slot(index)->close_request;

	pg_atomic_write_u64(&request->serial, 0);
	pg_write_barrier();
	request->reason = (uint8) reason;
	request->idle_us = idle_us;
	request->age_us = age_us;
	request->limit_ms = limit_ms;
	request->lifetime_cut = lifetime_cut;
	pg_write_barrier();
	pg_atomic_write_u64(&request->serial, serial);
}

/*
 * The closed backend: copy the close request meant for this session, if
 * there is one.  Safe inside error reporting: no locks, no allocation.
 */
bool
pgd_registry_my_close_request(PgdCloseRequest *request)
{
	PgdCloseRequest *shared;
	uint64		serial;

	if (pgd_my_slot == NULL)
		return false;
	shared = &pgd_my_slot->close_request;
	serial = pg_atomic_read_u64(&shared->serial);
	if (serial == 0 || serial != pgd_my_slot->serial)
		return false;
	pg_read_barrier();
	request->reason = shared->reason;
	request->idle_us = shared->idle_us;
	request->age_us = shared->age_us;
	request->limit_ms = shared->limit_ms;
	request->lifetime_cut = shared->lifetime_cut;
	return true;
}

/*
 * Copy the unfolded hold-time counts of the session with this serial.
 * Returns false if the slot holds another session by now.
 */
bool
pgd_registry_read_hold(int index, uint64 serial, PgdHoldStats *hold)
{
	volatile PgdSlot *slot = &pgd_slots[index].slot;

	return pgd_slot_copy(slot, offsetof(PgdSlot, hold),
						 sizeof(PgdHoldStats), hold) == serial;
}

/* Copy one session completely: our slot, then core's status fields. */
bool
pgd_registry_read(int index, PgdSessionSnapshot *snap)
{
	return pgd_registry_read_slot(index, snap) &&
		pgd_registry_read_status(snap);
}
