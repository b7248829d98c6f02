/*-------------------------------------------------------------------------
 *
 * declared.c
 *		Declared client pools: settings a client passes to say which pool
 *		a connection belongs to and how that pool is configured, published
 *		in the session's registry slot for pooldiag.sessions.
 *
 * pooldiag.client_pool, client_pool_size, client_max_overflow,
 * client_pool_timeout, client_recycle and client_instance are PGC_USERSET:
 * any role may set them, with SET, ALTER ROLE ... SET, or as startup
 * options at no extra round trip (libpq
 * options='-c pooldiag.client_pool_size=5').
 * They describe the client and nothing else: no part of pooldiag's
 * enforcement reads them (policy.c reads only its own four settings).
 *
 * Values.  The integers are range-checked by the GUC machinery (sizes from 0
 * to PGD_MAX_CLIENT_POOL_SIZE, times from 0 to INT_MAX ms); an integer
 * counts as declared when its value came from anywhere but the built-in
 * default, which the check hook notes as the value's "extra" (policy.c's
 * pgd_check_policy_setting(), which does only that).  So RESET returns to
 * "not declared" unless a startup option, a role or database setting or
 * the configuration file gave a value.  The strings come from clients and
 * are never rejected: they are made valid in the database encoding and cut
 * at NAMEDATALEN - 1 bytes at a character, by the rule of sanitize.c, and
 * "" means not declared.
 *
 * Publication.  The assign hooks update the backend-local PgdDeclaredPool
 * and publish it at once (pgd_registry_publish_declared()).  That is a safe
 * point: everything is computed before the registry's write section, which
 * is a critical section of plain stores that cannot fail, allocate or
 * wait, so it may run wherever an assign hook runs, including the GUC
 * rollback at the end of an aborted transaction, which only an assign hook
 * sees (no hook of ours runs after it before the session is idle).  Before
 * the session has a slot (startup options, role and database settings are
 * applied before the session attaches) publishing does nothing; the hooks
 * only note the values, and pgd_declared_publish_at_connect() sanitizes
 * the strings again against the now certain database encoding and
 * publishes them when the slot is claimed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "mb/pg_wchar.h"
#include "utils/guc.h"

#include "declared.h"
#include "policy.h"
#include "registry.h"
#include "sanitize.h"

/*
 * The most connections a client pool can usefully declare: PostgreSQL's
 * own limit on backends (MAX_BACKENDS, 2^18 - 1, whose header moved between
 * versions).
 */
#define PGD_MAX_CLIENT_POOL_SIZE	0x3FFFF

/* The settings' variables; the GUC machinery owns the strings. */
static char *pgd_client_pool = NULL;
static int	pgd_client_pool_size = 0;
static int	pgd_client_max_overflow = 0;
static int	pgd_client_pool_timeout_ms = 0;
static int	pgd_client_recycle_ms = 0;
static char *pgd_client_instance = NULL;

/* What this backend publishes. */
static PgdDeclaredPool pgd_declared_local;

static void
pgd_assign_declared_int(PgdDeclaredInt which, int newval, void *extra)
{
	uint32		bit = (uint32) 1 << which;

	pgd_declared_local.value[which] = newval;
	if (extra != NULL && *(GucSource *) extra != PGC_S_DEFAULT)
		pgd_declared_local.declared |= bit;
	else
		pgd_declared_local.declared &= ~bit;
	pgd_registry_publish_declared(&pgd_declared_local);
}

static void
pgd_assign_pool_size(int newval, void *extra)
{
	pgd_assign_declared_int(PGD_DECL_POOL_SIZE, newval, extra);
}

static void
pgd_assign_max_overflow(int newval, void *extra)
{
	pgd_assign_declared_int(PGD_DECL_MAX_OVERFLOW, newval, extra);
}

static void
pgd_assign_pool_timeout(int newval, void *extra)
{
	pgd_assign_declared_int(PGD_DECL_POOL_TIMEOUT, newval, extra);
}

static void
pgd_assign_recycle(int newval, void *extra)
{
	pgd_assign_declared_int(PGD_DECL_RECYCLE, newval, extra);
}

/* A client's string, valid in the database encoding, cut at a character. */
static void
pgd_declared_string(char *dst, const char *value)
{
	if (value == NULL)
		dst[0] = '\0';
	else
		pgd_sanitize_string(dst, NAMEDATALEN, value, GetDatabaseEncoding());
}

static void
pgd_assign_pool(const char *newval, void *extra)
{
	pgd_declared_string(pgd_declared_local.pool, newval);
	pgd_registry_publish_declared(&pgd_declared_local);
}

static void
pgd_assign_instance(const char *newval, void *extra)
{
	pgd_declared_string(pgd_declared_local.instance, newval);
	pgd_registry_publish_declared(&pgd_declared_local);
}

/*
 * The session has just claimed its slot.  Values assigned before may have
 * been checked against another encoding than the database's (the
 * postmaster's configuration file), so the strings are made again from the
 * settings as they are now.
 */
void
pgd_declared_publish_at_connect(void)
{
	pgd_declared_string(pgd_declared_local.pool, pgd_client_pool);
	pgd_declared_string(pgd_declared_local.instance, pgd_client_instance);
	pgd_registry_publish_declared(&pgd_declared_local);
}

void
pgd_define_declared_settings(void)
{
	DefineCustomStringVariable("pooldiag.client_pool",
							   "Name of the client connection pool this session belongs to, as the client declares it.",
							   "Shown in pooldiag.sessions; never used for enforcement.",
							   &pgd_client_pool,
							   "",
							   PGC_USERSET, 0,
							   NULL, pgd_assign_pool, NULL);
	DefineCustomIntVariable("pooldiag.client_pool_size",
							"Size of the client connection pool this session belongs to, as the client declares it.",
							"Shown in pooldiag.sessions; never used for enforcement.",
							&pgd_client_pool_size,
							0, 0, PGD_MAX_CLIENT_POOL_SIZE,
							PGC_USERSET, 0,
							pgd_check_policy_setting, pgd_assign_pool_size, NULL);
	DefineCustomIntVariable("pooldiag.client_max_overflow",
							"Connections the client pool may open beyond its size, as the client declares it.",
							"Shown in pooldiag.sessions; never used for enforcement.",
							&pgd_client_max_overflow,
							0, 0, PGD_MAX_CLIENT_POOL_SIZE,
							PGC_USERSET, 0,
							pgd_check_policy_setting, pgd_assign_max_overflow, NULL);
	DefineCustomIntVariable("pooldiag.client_pool_timeout",
							"How long the client pool waits for a free connection, as the client declares it.",
							"Shown in pooldiag.sessions; never used for enforcement.",
							&pgd_client_pool_timeout_ms,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_pool_timeout, NULL);
	DefineCustomIntVariable("pooldiag.client_recycle",
							"Age at which the client pool replaces a connection, as the client declares it; 0 means never.",
							"Shown in pooldiag.sessions; never used for enforcement: pooldiag.max_lifetime is the server's.",
							&pgd_client_recycle_ms,
							0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							pgd_check_policy_setting, pgd_assign_recycle, NULL);
	DefineCustomStringVariable("pooldiag.client_instance",
							   "Name of the client process or instance that owns the pool, as the client declares it, e.g. host:pid.",
							   "Shown in pooldiag.sessions; never used for enforcement.",
							   &pgd_client_instance,
							   "",
							   PGC_USERSET, 0,
							   NULL, pgd_assign_instance, NULL);
}

/*
 * The pool name this session declares, "" when none: what pools.c keys the
 * session's pool on (it may run before pgd_declared_publish_at_connect()).
 */
const char *
pgd_declared_pool_name(void)
{
	return pgd_declared_local.pool;
}
