/*-------------------------------------------------------------------------
 *
 * policy.c
 *		Which policy is in effect for a session, when each of its deadlines
 *		falls, and whether it is exempt.
 *
 * Where a session's values come from
 * ----------------------------------
 * idle_timeout, max_lifetime, idle_in_transaction_timeout and leak_threshold
 * are PGC_SUSET settings, so PostgreSQL's own machinery resolves them per
 * session: postgresql.conf, then ALTER DATABASE/ROLE ... SET, startup
 * options and SET.  The check hook notes each value's GucSource and the
 * assign hook publishes (value, own) into the session's registry slot, where
 * "own" means the value came from a per-database/role setting or the session
 * itself.
 *
 * A reload does not reach an idle backend until its client sends something,
 * yet a reload must apply to idle sessions within one naptime.  So values
 * that came from the configuration file are not taken from the session at
 * all: the postmaster, which reloads first and has no per-database settings,
 * publishes its own values in shared memory (pgd_file_policy), and the
 * worker uses those.  Only the postmaster writes pgd_file_policy, and it
 * writes whole ints, which readers load atomically; no lock is needed.
 *
 * Exemption lists are parsed once by their check hooks into a NUL-separated
 * list kept as the GUC's "extra", so matching allocates nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "compat.h"
#include "policy.h"
#include "pooldiag.h"

/* The configuration-file values, published by the postmaster. */
typedef struct PgdFilePolicy
{
	int			value_ms[PGD_NUM_POLICY_SETTINGS];
} PgdFilePolicy;

static PgdFilePolicy *pgd_file_policy = NULL;

/* This backend's own values and where they came from. */
static PgdSessionPolicy pgd_policy_local;

/* Parsed exemption lists: "a\0b\0\0", or NULL when empty. */
static const char *pgd_exempt_role_list = NULL;
static const char *pgd_exempt_application_list = NULL;

Size
pgd_policy_shmem_size(void)
{
	return sizeof(PgdFilePolicy);
}

void
pgd_policy_shmem_init(void)
{
	bool		found;

	pgd_file_policy = ShmemInitStruct("pooldiag file policy",
									  sizeof(PgdFilePolicy), &found);
	if (!found)
	{
		/* Runs in the postmaster, whose values are the file's. */
		pgd_file_policy->value_ms[PGD_IDLE_TIMEOUT] = pgd_idle_timeout_ms;
		pgd_file_policy->value_ms[PGD_MAX_LIFETIME] = pgd_max_lifetime_ms;
		pgd_file_policy->value_ms[PGD_IDLE_IN_TRANSACTION_TIMEOUT] =
			pgd_idle_in_transaction_timeout_ms;
		pgd_file_policy->value_ms[PGD_LEAK_THRESHOLD] = pgd_leak_threshold_ms;
	}
}

const PgdSessionPolicy *
pgd_own_policy(void)
{
	return &pgd_policy_local;
}

/*
 * Check hook of the four policy settings: remember the value's source for
 * the assign hook.  The values themselves are range-checked by the GUC
 * machinery.
 */
bool
pgd_check_policy_setting(int *newval, void **extra, GucSource source)
{
	GucSource  *saved = pgd_guc_malloc(sizeof(GucSource));

	if (saved == NULL)
		return false;
	*saved = source;
	*extra = saved;
	return true;
}

static void
pgd_assign_policy_setting(PgdPolicySetting setting, int newval, void *extra)
{
	bool		own = extra != NULL && *(GucSource *) extra >= PGC_S_GLOBAL;

	pgd_policy_local.value_ms[setting] = newval;
	pgd_policy_local.own[setting] = own;

	/* The postmaster's values are the configuration file's. */
	if (!IsUnderPostmaster && pgd_file_policy != NULL)
		pgd_file_policy->value_ms[setting] = newval;

	pgd_registry_publish_policy(&pgd_policy_local);
}

void
pgd_assign_idle_timeout(int newval, void *extra)
{
	pgd_assign_policy_setting(PGD_IDLE_TIMEOUT, newval, extra);
}

void
pgd_assign_max_lifetime(int newval, void *extra)
{
	pgd_assign_policy_setting(PGD_MAX_LIFETIME, newval, extra);
}

void
pgd_assign_idle_in_transaction_timeout(int newval, void *extra)
{
	pgd_assign_policy_setting(PGD_IDLE_IN_TRANSACTION_TIMEOUT, newval, extra);
}

void
pgd_assign_leak_threshold(int newval, void *extra)
{
	pgd_assign_policy_setting(PGD_LEAK_THRESHOLD, newval, extra);
}

/*
 * Pack a parsed list into one malloc'd block, "a\0b\0\0", for GUC extra.
 */
static char *
pgd_pack_list(List *elements)
{
	Size		size = 1;
	ListCell   *lc;
	char	   *packed;
	char	   *p;

	foreach(lc, elements)
		size += strlen((char *) lfirst(lc)) + 1;
	packed = pgd_guc_malloc(size);
	if (packed == NULL)
		return NULL;
	p = packed;
	foreach(lc, elements)
	{
		size_t		len = strlen((char *) lfirst(lc)) + 1;

		memcpy(p, lfirst(lc), len);
		p += len;
	}
	*p = '\0';
	return packed;
}

/* Check hook of pooldiag.exempt_roles: a list of role names. */
bool
pgd_check_name_list(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *names;

	if (!SplitIdentifierString(copy, ',', &names))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(copy);
		return false;
	}
	*extra = pgd_pack_list(names);
	list_free(names);
	pfree(copy);
	return *extra != NULL;
}

/*
 * Check hook of pooldiag.exempt_applications: application_name patterns in
 * which "*" matches any run of characters.  Application names are printable
 * ASCII of at most NAMEDATALEN - 1 bytes, so a pattern outside that could
 * never match and is refused as a mistake.
 */
bool
pgd_check_pattern_list(char **newval, void **extra, GucSource source)
{
	char	   *copy = pstrdup(*newval);
	List	   *patterns;
	ListCell   *lc;

	if (!SplitGUCList(copy, ',', &patterns))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(copy);
		return false;
	}
	foreach(lc, patterns)
	{
		const char *pattern = lfirst(lc);

		if (pattern[0] == '\0')
		{
			GUC_check_errdetail("Empty application_name patterns are not allowed.");
			goto fail;
		}
		if (strlen(pattern) >= NAMEDATALEN)
		{
			GUC_check_errdetail("Pattern \"%s\" is longer than the longest application_name (%d bytes).",
								pattern, NAMEDATALEN - 1);
			goto fail;
		}
		for (const char *c = pattern; *c; c++)
		{
			if (*c < 32 || *c > 126)
			{
				GUC_check_errdetail("Pattern \"%s\" contains a character that application_name cannot hold.",
									pattern);
				goto fail;
			}
		}
	}
	*extra = pgd_pack_list(patterns);
	list_free(patterns);
	pfree(copy);
	return *extra != NULL;

fail:
	list_free(patterns);
	pfree(copy);
	return false;
}

void
pgd_assign_exempt_roles(const char *newval, void *extra)
{
	pgd_exempt_role_list = extra;
}

void
pgd_assign_exempt_applications(const char *newval, void *extra)
{
	pgd_exempt_application_list = extra;
}

/* Does 'text' match 'pattern', where '*' matches any run of characters? */
static bool
pgd_wildcard_match(const char *pattern, const char *text)
{
	const char *star = NULL;
	const char *resume = NULL;

	while (*text)
	{
		if (*pattern == '*')
		{
			star = pattern++;
			resume = text;
		}
		else if (*pattern == *text)
		{
			pattern++;
			text++;
		}
		else if (star)
		{
			pattern = star + 1;
			text = ++resume;
		}
		else
			return false;
	}
	while (*pattern == '*')
		pattern++;
	return *pattern == '\0';
}

static bool
pgd_list_matches(const char *list, const char *value, bool wildcards)
{
	if (list == NULL || value == NULL)
		return false;
	for (const char *p = list; *p; p += strlen(p) + 1)
	{
		if (wildcards ? pgd_wildcard_match(p, value) : strcmp(p, value) == 0)
			return true;
	}
	return false;
}

const char *
pgd_exemption_name(PgdExemption exemption)
{
	switch (exemption)
	{
		case PGD_NOT_EXEMPT:
			return NULL;
		case PGD_EXEMPT_SUPERUSER:
			return "superuser";
		case PGD_EXEMPT_ROLE:
			return "exempt_roles";
		case PGD_EXEMPT_APPLICATION:
			return "exempt_applications";
		case PGD_EXEMPT_UNTRACKED:
			return "track_activities_off";
	}
	return NULL;
}

/*
 * Idle outside a transaction.  Core's state decides when we have it (the
 * snapshot is reconciled with it; see registry.c); without it (the
 * enforcer's quick scan) our checkout accounting decides, and the enforcer
 * reads core's state before it acts.  STATE_DISABLED (track_activities =
 * off) is not idle: core then cannot tell a statement waiting for a lock
 * in parse analysis from an idle session, and neither can we, so such a
 * session is never closed (see PGD_EXEMPT_UNTRACKED).
 */
static bool
pgd_idle_outside_transaction(const PgdSessionSnapshot *snap)
{
	return snap->slot.checkout_start == 0 &&
		(!snap->has_status || snap->state == STATE_IDLE);
}

/* Only core knows whether a checked-out session is idle in a transaction. */
static bool
pgd_idle_in_transaction(const PgdSessionSnapshot *snap)
{
	return snap->slot.checkout_start != 0 && snap->has_status &&
		(snap->state == STATE_IDLEINTRANSACTION ||
		 snap->state == STATE_IDLEINTRANSACTION_ABORTED);
}

/* The value of one policy setting in effect for a session; 0 = off. */
int
pgd_effective_ms(const PgdSlot *slot, PgdPolicySetting setting)
{
	if (slot->policy.own[setting] || pgd_file_policy == NULL)
		return slot->policy.value_ms[setting];
	return pgd_file_policy->value_ms[setting];
}

/*
 * Is the session still in the state that justifies closing it for 'reason'?
 * The worker asks this again right before it signals.
 */
bool
pgd_state_fits_reason(const PgdSessionSnapshot *snap, PgdReason reason)
{
	if (reason == PGD_R_IDLE_IN_TRANSACTION_TIMEOUT)
		return pgd_idle_in_transaction(snap);
	return pgd_idle_outside_transaction(snap);
}

static void
pgd_consider(PgdVerdict *verdict, TimestampTz deadline, PgdReason reason)
{
	if (verdict->terminate_at == 0 || deadline < verdict->terminate_at)
	{
		verdict->terminate_at = deadline;
		verdict->terminate_reason = reason;
	}
}

/*
 * Work out a session's effective policy, its pending deadline and whether
 * it is due now.  'rolname' is NULL when the caller cannot use the catalogs
 * (the enforcer's quick scan); the exemptions by role and by superuser are
 * then not decided, and the enforcer decides them, with the role as it is
 * now (as pg_terminate_backend() checks it), before it closes anything.
 * Without core's status the exemption by application_name and the
 * idle-in-transaction deadline are not reported either.
 */
void
pgd_policy_evaluate(const PgdSessionSnapshot *snap, const char *rolname,
					TimestampTz now, PgdVerdict *verdict)
{
	const PgdSlot *slot = &snap->slot;

	memset(verdict, 0, sizeof(PgdVerdict));

	for (int i = 0; i < PGD_NUM_POLICY_SETTINGS; i++)
		verdict->effective_ms[i] = pgd_effective_ms(slot, i);

	if (verdict->effective_ms[PGD_MAX_LIFETIME] > 0)
	{
		double		lifetime_us = (double) verdict->effective_ms[PGD_MAX_LIFETIME] * 1000.0;

		lifetime_us *= 1.0 - slot->lifetime_cut;
		verdict->recycle_at = slot->backend_start + (int64) lifetime_us;
	}

	if (pgd_idle_outside_transaction(snap))
	{
		if (snap->draining)
			pgd_consider(verdict, slot->last_checkin, PGD_R_DRAIN);
		if (verdict->effective_ms[PGD_IDLE_TIMEOUT] > 0)
			pgd_consider(verdict,
						 slot->last_checkin +
						 (int64) verdict->effective_ms[PGD_IDLE_TIMEOUT] * 1000,
						 PGD_R_IDLE_TIMEOUT);
		if (verdict->recycle_at != 0)
			pgd_consider(verdict,
						 Max(verdict->recycle_at,
							 slot->last_checkin + (int64) pgd_recycle_min_idle_ms * 1000),
						 PGD_R_MAX_LIFETIME);
	}
	else if (pgd_idle_in_transaction(snap) &&
			 verdict->effective_ms[PGD_IDLE_IN_TRANSACTION_TIMEOUT] > 0)
		pgd_consider(verdict,
					 snap->state_change +
					 (int64) verdict->effective_ms[PGD_IDLE_IN_TRANSACTION_TIMEOUT] * 1000,
					 PGD_R_IDLE_IN_TRANSACTION_TIMEOUT);

	verdict->due = verdict->terminate_at != 0 && verdict->terminate_at <= now;

	if (slot->checkout_start != 0 && verdict->effective_ms[PGD_LEAK_THRESHOLD] > 0)
		verdict->leak_at = slot->checkout_start +
			(int64) verdict->effective_ms[PGD_LEAK_THRESHOLD] * 1000;

	if (snap->has_status && snap->state == STATE_DISABLED)
		verdict->exemption = PGD_EXEMPT_UNTRACKED;
	else if (rolname != NULL && pgd_exempt_superusers &&
			 superuser_arg(slot->roleid))
		verdict->exemption = PGD_EXEMPT_SUPERUSER;
	else if (pgd_list_matches(pgd_exempt_role_list, rolname, false))
		verdict->exemption = PGD_EXEMPT_ROLE;
	else if (snap->has_status &&
			 pgd_list_matches(pgd_exempt_application_list,
							  snap->application_name, true))
		verdict->exemption = PGD_EXEMPT_APPLICATION;
}

/* The setting whose limit a close for 'reason' exceeded; 0 for drain. */
int32
pgd_reason_limit_ms(const PgdVerdict *verdict, PgdReason reason)
{
	switch (reason)
	{
		case PGD_R_IDLE_TIMEOUT:
			return verdict->effective_ms[PGD_IDLE_TIMEOUT];
		case PGD_R_MAX_LIFETIME:
			return verdict->effective_ms[PGD_MAX_LIFETIME];
		case PGD_R_IDLE_IN_TRANSACTION_TIMEOUT:
			return verdict->effective_ms[PGD_IDLE_IN_TRANSACTION_TIMEOUT];
		default:
			return 0;
	}
}
