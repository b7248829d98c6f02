/*-------------------------------------------------------------------------
 *
 * registry.h
 *		The session registry: one shared-memory slot per client backend.
 *
 * See registry.c for the concurrency rules.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_REGISTRY_H
#define POOLDIAG_REGISTRY_H

#include "port/atomics.h"
#include "libpq/pqcomm.h"
#include "utils/backend_status.h"
#include "utils/timestamp.h"

#include "event_ring.h"
#include "pools.h"

struct PGPROC;

/* The per-session settings the worker enforces; see policy.c. */
typedef enum PgdPolicySetting
{
	PGD_IDLE_TIMEOUT,
	PGD_MAX_LIFETIME,
	PGD_IDLE_IN_TRANSACTION_TIMEOUT,
	PGD_LEAK_THRESHOLD,
	PGD_NUM_POLICY_SETTINGS
} PgdPolicySetting;

/*
 * A session's own value of each policy setting.  "own" is true when the
 * value came from a per-database or per-role setting, a startup option or a
 * SET: PostgreSQL does not let a reload override those, so neither does the
 * worker.  When it is false the value came from the configuration file, and
 * the worker uses the newest file value instead (idle sessions do not
 * process SIGHUP until their client sends something).
 */
typedef struct PgdSessionPolicy
{
	int			value_ms[PGD_NUM_POLICY_SETTINGS];
	bool		own[PGD_NUM_POLICY_SETTINGS];
} PgdSessionPolicy;

/*
 * A close that the enforcer asked for, kept in the slot so that the closed
 * backend can tell its client and the server log why (pgd_emit_log() adds it
 * to the FATAL that die() raises).  Written by the enforcer only, before it
 * signals: the plain fields first, then, after a write barrier, the serial
 * of the session it is meant for.  The backend reads the serial first and
 * the fields after a read barrier, and uses them only if the serial is its
 * own, so a request can never reach another session.
 */
typedef struct PgdCloseRequest
{
	pg_atomic_uint64 serial;	/* session it is meant for, 0 = none */
	uint8		reason;			/* PgdReason */
	int64		idle_us;		/* how long it had been idle (in transaction) */
	int64		age_us;			/* its age at the decision */
	int32		limit_ms;		/* the setting that was exceeded, 0 for drain */
	double		lifetime_cut;	/* the jitter cut of max_lifetime */
} PgdCloseRequest;

/*
 * The client pool a session declares it belongs to: the user-settable
 * settings pooldiag.client_pool, client_pool_size, client_max_overflow,
 * client_pool_timeout, client_recycle and client_instance (declared.c).
 * Shown in pooldiag.sessions; never used for enforcement.  The strings are
 * valid in the session's database encoding (see sanitize.c) and cut at
 * NAMEDATALEN - 1 bytes at a character; "" when not declared.  An integer
 * counts as declared when its bit is set in 'declared', i.e. when its value
 * came from anywhere but the built-in default.
 */
typedef enum PgdDeclaredInt
{
	PGD_DECL_POOL_SIZE,
	PGD_DECL_MAX_OVERFLOW,
	PGD_DECL_POOL_TIMEOUT,		/* milliseconds */
	PGD_DECL_RECYCLE,			/* milliseconds */
	PGD_NUM_DECLARED_INTS
} PgdDeclaredInt;

typedef struct PgdDeclaredPool
{
	uint32		declared;		/* bit (1 << PgdDeclaredInt) per set value */
	int32		value[PGD_NUM_DECLARED_INTS];
	char		pool[NAMEDATALEN];
	char		instance[NAMEDATALEN];
} PgdDeclaredPool;

/*
 * One registry slot.  Field order groups what is written once at connect,
 * what each checkout updates, and what other processes may write.
 */
typedef struct PgdSlot
{
	/*
	 * Odd while the owner is writing; see registry.c.  Readers must not use
	 * a copy taken while it was odd or while it changed.
	 */
	uint32		changecount;

	/* Written once, when the session is established. */
	int			pid;			/* 0 while the slot is free */
	uint64		serial;			/* unique per session in this server run */
	TimestampTz backend_start;
	Oid			roleid;
	Oid			databaseid;
	double		lifetime_cut;	/* fraction of max_lifetime cut off, drawn at connect */
	PgBackendStatus *beentry;	/* core's entry: state, application_name */
	struct PGPROC *proc;		/* core's PGPROC: wait_event_info */

	/* The session's pool (pools.c); written at connect and pool change. */
	int			pool_index;		/* -1: none */
	uint32		pool_generation;	/* the entry's, when the session joined */
	uint32		instance_hash;	/* of declared.instance; the idle-leak rule */

	/* Checkout accounting, written by the owner only. */
	int64		checkouts;
	TimestampTz checkout_start; /* 0 while not checked out */
	TimestampTz last_checkin;	/* start of the current idle period */
	int64		hold_time_us;	/* finished checkouts */
	int64		idle_time_us;	/* finished idle periods */

	/* Written by the owner whenever one of its policy settings changes. */
	PgdSessionPolicy policy;

	/*
	 * Written by other processes; atomics outside the changecount protocol,
	 * each keyed by the serial of the session it is meant for, so that a
	 * request can never leak to the next session that uses the slot, even
	 * one with the same (reused) pid.  Readers copy the slot up to here.
	 */
	pg_atomic_uint64 drain_serial;	/* pooldiag.drain() */
	PgdCloseRequest close_request;	/* the enforcer, before it signals */

	/*
	 * Written by the owner, under the change count, at connect and whenever
	 * one of the settings changes.  Only pooldiag.sessions reads it, with
	 * pgd_registry_read_declared(), so the enforcer's scan, which copies
	 * the slot up to drain_serial, does not copy it.
	 */
	PgdDeclaredPool declared;

	/*
	 * The owner's checkouts since pooldiag.reset(), not yet folded into its
	 * pool (pools.c).  Under the change count like the fields above, but
	 * copied only by pgd_registry_read_hold(): the enforcer's scan does not
	 * need these 1.2 kB.
	 */
	PgdHoldStats hold;
} PgdSlot;

/*
 * A consistent private copy of one session: our slot plus the fields of
 * core's PgBackendStatus entry that pooldiag shows or decides on.
 */
typedef struct PgdSessionSnapshot
{
	int			index;			/* slot number */
	PgdSlot		slot;			/* fields before drain_serial only */
	bool		draining;

	/* from core's entry, valid only if has_status */
	bool		has_status;
	BackendState state;
	TimestampTz state_change;
	Oid			userid;
	Oid			databaseid;
	char		application_name[NAMEDATALEN];
	SockAddr	client_addr;
} PgdSessionSnapshot;

extern Size pgd_registry_shmem_size(void);
extern void pgd_registry_shmem_init(void);
extern int	pgd_registry_size(void);

/* Owner side: the current backend's own slot. */
extern PgdSlot *pgd_my_slot;
extern void pgd_registry_attach(TimestampTz ready_at);
extern void pgd_registry_detach(void);
extern void pgd_registry_begin_checkout(TimestampTz start);
extern void pgd_registry_end_checkout(TimestampTz end);
extern void pgd_registry_publish_policy(const PgdSessionPolicy *policy);
extern void pgd_registry_set_pool(int index, uint32 generation);
extern void pgd_registry_publish_declared(const PgdDeclaredPool *declared);

/* Reader side: any process. */
extern bool pgd_registry_read(int index, PgdSessionSnapshot *snap);
extern bool pgd_registry_read_slot(int index, PgdSessionSnapshot *snap);
extern bool pgd_registry_read_status(PgdSessionSnapshot *snap);
extern bool pgd_registry_read_declared(const PgdSessionSnapshot *snap,
									   PgdDeclaredPool *declared);
extern uint32 pgd_registry_wait_event_info(const PgdSessionSnapshot *snap);
extern PgdSlot *pgd_registry_slot(int index);
extern bool pgd_registry_read_hold(int index, uint64 serial, PgdHoldStats *hold);

/* Cross-process requests, keyed by session serial. */
extern bool pgd_registry_request_drain(int index, uint64 serial);
extern void pgd_registry_post_close_request(int index, uint64 serial,
											PgdReason reason, int64 idle_us,
											int64 age_us, int32 limit_ms,
											double lifetime_cut);
extern bool pgd_registry_my_close_request(PgdCloseRequest *request);

#endif							/* POOLDIAG_REGISTRY_H */
