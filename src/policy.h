/*-------------------------------------------------------------------------
 *
 * policy.h
 *		Effective per-session policy, deadlines and exemptions.  See policy.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_POLICY_H
#define POOLDIAG_POLICY_H

#include "utils/guc.h"

#include "event_ring.h"
#include "registry.h"

/* GUC hooks (defined in pooldiag.c). */
extern bool pgd_check_policy_setting(int *newval, void **extra, GucSource source);
extern void pgd_assign_idle_timeout(int newval, void *extra);
extern void pgd_assign_max_lifetime(int newval, void *extra);
extern void pgd_assign_idle_in_transaction_timeout(int newval, void *extra);
extern void pgd_assign_leak_threshold(int newval, void *extra);
extern bool pgd_check_name_list(char **newval, void **extra, GucSource source);
extern bool pgd_check_pattern_list(char **newval, void **extra, GucSource source);
extern void pgd_assign_exempt_roles(const char *newval, void *extra);
extern void pgd_assign_exempt_applications(const char *newval, void *extra);

/* The current backend's own policy values, published when it attaches. */
extern const PgdSessionPolicy *pgd_own_policy(void);

/* Why a session may not be closed. */
typedef enum PgdExemption
{
	PGD_NOT_EXEMPT = 0,
	PGD_EXEMPT_SUPERUSER,
	PGD_EXEMPT_ROLE,
	PGD_EXEMPT_APPLICATION,
	PGD_EXEMPT_UNTRACKED		/* track_activities = off: busy or idle unknown */
} PgdExemption;

extern const char *pgd_exemption_name(PgdExemption exemption);

/*
 * Everything the worker and pooldiag.sessions need to know about one
 * session's enforcement, computed from a snapshot by pgd_policy_evaluate().
 */
typedef struct PgdVerdict
{
	int			effective_ms[PGD_NUM_POLICY_SETTINGS];	/* 0 = off */
	TimestampTz recycle_at;		/* 0 when max_lifetime is off */
	TimestampTz terminate_at;	/* earliest pending deadline, 0 if none */
	PgdReason	terminate_reason;
	bool		due;			/* terminate_at has passed and the state fits */
	TimestampTz leak_at;		/* when the current checkout becomes a leak suspect */
	PgdExemption exemption;
} PgdVerdict;

extern void pgd_policy_evaluate(const PgdSessionSnapshot *snap,
								const char *rolname, TimestampTz now,
								PgdVerdict *verdict);
extern int	pgd_effective_ms(const PgdSlot *slot, PgdPolicySetting setting);
extern int32 pgd_reason_limit_ms(const PgdVerdict *verdict, PgdReason reason);
extern bool pgd_state_fits_reason(const PgdSessionSnapshot *snap,
								  PgdReason reason);

#endif							/* POOLDIAG_POLICY_H */
