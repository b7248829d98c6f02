/*-------------------------------------------------------------------------
 *
 * pooldiag.h
 *		Settings and entry points shared by pooldiag's source files.
 *
 * Each file owns one concern:
 *	 pooldiag.c    loading, settings, shared-memory set-up
 *	 registry.c    the per-backend session registry
 *	 hooks.c       executor/utility/transaction/auth/exit/log hooks
 *	 event_ring.c  the shared-memory event queue
 *	 worker.c      the enforcer background worker: enforcement scan and loop
 *	 writer.c      the writer background worker: event writing loop, shutdown
 *	 flush.c       writing queued events to pooldiag.events, retention
 *	 fold.c        folding repeated rejections into one row per window
 *	 sanitize.c    making client-chosen strings valid text
 *	 policy.c      effective per-session policy, deadlines, exemptions
 *	 declared.c    settings clients declare their pools with (shown only)
 *	 capacity.c    sessions in use against connection slots, peak, saturation
 *	 views.c       SQL-callable functions behind the views
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_H
#define POOLDIAG_H

#include "utils/timestamp.h"

/* pooldiag.log_checkouts */
typedef enum PgdLogCheckouts
{
	PGD_LOG_CHECKOUTS_NONE,
	PGD_LOG_CHECKOUTS_SLOW,
	PGD_LOG_CHECKOUTS_ALL
} PgdLogCheckouts;

/* Settings; see pooldiag.c for their definitions and README.md. */
extern int	pgd_event_buffer_size;
extern char *pgd_database;
extern int	pgd_flush_interval_ms;
extern int	pgd_log_checkouts;
extern int	pgd_log_min_hold_ms;
extern int	pgd_events_retention_s;
extern int	pgd_rejection_fold_window_ms;
extern int	pgd_naptime_ms;
extern int	pgd_idle_timeout_ms;
extern int	pgd_max_lifetime_ms;
extern double pgd_lifetime_jitter;
extern int	pgd_recycle_min_idle_ms;
extern int	pgd_idle_in_transaction_timeout_ms;
extern int	pgd_leak_threshold_ms;
extern int	pgd_max_terminations_per_second;
extern bool pgd_dry_run;
extern bool pgd_exempt_superusers;
extern char *pgd_exempt_roles;
extern char *pgd_exempt_applications;

/* True when the library was loaded through shared_preload_libraries. */
extern bool pgd_loaded;
extern void pgd_require_loaded(void);

/* hooks.c */
extern void pgd_install_hooks(void);

/* worker.c */
extern void pgd_register_workers(void);
extern Size pgd_worker_shmem_size(void);
extern void pgd_worker_shmem_init(void);

/* policy.c */
extern Size pgd_policy_shmem_size(void);
extern void pgd_policy_shmem_init(void);
extern void pgd_define_policy_settings(void);

#endif							/* POOLDIAG_H */
