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
	TimestampTz backend_start;
	Oid			roleid;
	Oid			databaseid;
	bool		is_superuser;
	double		lifetime_cut;	/* fraction of max_lifetime cut off, drawn at connect */
	PgBackendStatus *beentry;	/* core's entry: state, application_name */

	/* Checkout accounting, written by the owner only. */
	int64		checkouts;
	TimestampTz checkout_start; /* 0 while not checked out */
	TimestampTz last_checkin;	/* start of the current idle period */
	int64		hold_time_us;	/* finished checkouts */
	int64		idle_time_us;	/* finished idle periods */

	/* Written by the owner whenever one of its policy settings changes. */
	PgdSessionPolicy policy;

	/*
	 * Written by other backends (pooldiag.drain()); atomic, outside the
	 * changecount protocol.  Holds the pid it was meant for, so a request
	 * can never leak to the next session that reuses the slot.
	 */
	pg_atomic_uint32 drain_pid;
} PgdSlot;

/*
 * A consistent private copy of one session: our slot plus the fields of
 * core's PgBackendStatus entry that pooldiag shows or decides on.
 */
typedef struct PgdSessionSnapshot
{
	int			index;			/* slot number */
	PgdSlot		slot;			/* drain_pid is not copied; see draining */
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

/* Reader side: any process. */
extern bool pgd_registry_read(int index, PgdSessionSnapshot *snap);
extern bool pgd_registry_read_slot(int index, PgdSessionSnapshot *snap);
extern bool pgd_registry_read_status(PgdSessionSnapshot *snap);
extern PgdSlot *pgd_registry_slot(int index);

#endif							/* POOLDIAG_REGISTRY_H */
