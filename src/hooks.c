/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		The backend side of pooldiag: which hooks fire when, and how they
 *		turn into checkouts, checkins and events.
 *
 * A session's life as these hooks see it:
 *
 *	 ClientAuthentication_hook  authentication finished.  On success the
 *								session is "pending"; it is not established
 *								until every later connection check passed.
 *	 emit_log_hook				a FATAL before the session was established
 *								is a rejected connection attempt.  This may
 *								run before InitProcess(), without a PGPROC,
 *								so it touches only the lock-free event ring.
 *	 XACT_EVENT_PRE_COMMIT		the first commit of a pending session closes
 *								InitPostgres()'s transaction: every check has
 *								passed and per-role/database settings are in
 *								effect.  The session attaches its registry
 *								slot and records "connect".
 *	 ExecutorStart_hook,		the first statement after idle starts a
 *	 ProcessUtility_hook		checkout.  This is the per-statement path: one
 *								branch when a checkout is already open.
 *	 XACT_EVENT_COMMIT/ABORT/	the transaction ended; unless a transaction
 *	 PREPARE					block goes on, the checkout ends (checkin).
 *	 before_shmem_exit			the session ends: "disconnect" with the cause
 *								from pgStatSessionEndCause.
 *
 * Transaction blocks need care, because the transaction callbacks do not
 * say whether the block goes on.  The utility hook therefore notes BEGIN,
 * and how the COMMIT, ROLLBACK or PREPARE that is about to end the block
 * will end it (pgd_block), and the callbacks then decide:
 *
 *	 COMMIT/PREPARE event  the checkout ends, unless a COMMIT AND CHAIN
 *						   succeeded (the chained transaction goes on).
 *	 ABORT event		   a ROLLBACK (or a COMMIT of a block whose
 *						   subtransaction failed, which rolls back) ends the
 *						   checkout unless AND CHAIN; a failed COMMIT ends
 *						   it even with AND CHAIN (xact.c does not chain a
 *						   failed commit); an error inside a live block
 *						   leaves the session idle in an aborted
 *						   transaction, still checked out; any other abort
 *						   (autocommit, implicit block) ends it.
 *	 no event at all	   ROLLBACK of a block whose top level already
 *						   aborted: the block ends when the statement
 *						   returns, unless AND CHAIN.
 *
 * Utility statements may commit and start transactions while they run:
 * CALL and DO (procedures that COMMIT), CREATE INDEX CONCURRENTLY, REINDEX
 * CONCURRENTLY, VACUUM and ANALYZE of several relations.  Those transaction
 * ends happen inside the statement and do not end the checkout;
 * pgd_utility_depth tells them apart.  The statement's last transaction is
 * always ended by the caller, after the utility returned.
 *
 * Between reading a message and reaching the executor or utility hook
 * (parse analysis, planning, lock waits there) no hook of ours runs; the
 * readers take that part of a checkout from core's state (registry.c).
 *
 * All state here is backend-local; the shared slot is written only through
 * registry.c's owner functions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <netinet/in.h>

#include "access/xact.h"
#include "executor/executor.h"
#include "libpq/auth.h"
#include "libpq/libpq-be.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "capacity.h"
#include "compat.h"
#include "declared.h"
#include "event_ring.h"
#include "hooks.h"
#include "policy.h"
#include "pooldiag.h"
#include "pools.h"
#include "registry.h"
#include "sanitize.h"

static ClientAuthentication_hook_type prev_ClientAuthentication_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility_hook = NULL;

/* Authenticated, waiting for InitPostgres() to commit. */
static bool pgd_session_pending = false;

/* A rejection has been recorded for this process already. */
static bool pgd_rejection_recorded = false;

/* How the statement that ends a transaction block will end it. */
typedef enum PgdBlockEnd
{
	PGD_END_NONE = 0,			/* no COMMIT/ROLLBACK/PREPARE is running */
	PGD_END_COMMIT,				/* a commit of a live block */
	PGD_END_ROLLBACK,			/* a rollback through an ABORT event */
	PGD_END_PREPARE
} PgdBlockEnd;

/*
 * Where the current transaction block stands, as far as the transaction
 * callbacks cannot tell by themselves.
 */
typedef struct PgdBlockState
{
	bool		explicit_block; /* inside BEGIN ... */
	PgdBlockEnd ending;
	bool		chain;			/* ... AND CHAIN */
} PgdBlockState;

static PgdBlockState pgd_block;

/*
 * application_name when the current checkout started: its checkin event
 * carries the same identity as its checkout event, even when the client
 * changed application_name in between (pgjdbc and PgBouncer send SET
 * application_name), so per-application sums of the two balance.
 */
static char pgd_checkout_appname[NAMEDATALEN];

/* Nesting of utility statements, which may end transactions inside. */
static int	pgd_utility_depth = 0;

/*
 * The statement running outside a checkout is a session set-up statement
 * (see pgd_is_session_setup()); its transaction's end counts nothing, even
 * when it fails.  Cleared when that transaction ends.
 */
static bool pgd_setup_statement = false;

static void pgd_client_authentication(Port *port, int status);
static void pgd_emit_log(ErrorData *edata);
static void pgd_executor_start(QueryDesc *queryDesc, int eflags);
static void pgd_process_utility(PlannedStmt *pstmt, const char *queryString,
								bool readOnlyTree, ProcessUtilityContext context,
								ParamListInfo params, QueryEnvironment *queryEnv,
								DestReceiver *dest, QueryCompletion *qc);
static void pgd_xact_callback(XactEvent event, void *arg);
static void pgd_session_exit(int code, Datum arg);
static void pgd_establish_session(void);
static void pgd_checkin(TimestampTz end);

void
pgd_install_hooks(void)
{
	prev_ClientAuthentication_hook = ClientAuthentication_hook;
	ClientAuthentication_hook = pgd_client_authentication;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = pgd_emit_log;
	prev_ExecutorStart_hook = ExecutorStart_hook;
	ExecutorStart_hook = pgd_executor_start;
	prev_ProcessUtility_hook = ProcessUtility_hook;
	ProcessUtility_hook = pgd_process_utility;
}

/*
 * Fill an event with the identity of the current backend.  Works in a
 * process that is still being set up: everything may be missing.
 *
 * The names and application_name may have been chosen by the client, and
 * for a rejected attempt nobody has authenticated them, so they go through
 * pgd_sanitize_string() (see sanitize.c), which also fits them into the
 * fixed-size fields without splitting a character.  The encoding they are
 * checked against is the database's once the session is established.  A
 * refused process has none yet (it may fail before its database is even
 * known), so its strings are checked as UTF-8: by far the most common
 * encoding of clients and databases, and a strict one, so whatever it keeps
 * is also plausible text for the writer to check again against the events
 * database (flush.c).
 */
void
pgd_event_from_own_session(PgdEvent *event, PgdEventType type, PgdReason reason)
{
	int			encoding = type == PGD_EV_REJECTED ? PG_UTF8 : GetDatabaseEncoding();
	const char *appname = application_name;

	memset(event, 0, sizeof(PgdEvent));
	event->type = type;
	event->reason = reason;
	event->pid = MyProcPid;
	event->backend_start = MyStartTimestamp;

	if (MyProcPort != NULL)
	{
		const struct sockaddr *addr = (const struct sockaddr *) &MyProcPort->raddr.addr;

		if (MyProcPort->database_name)
			pgd_sanitize_string(NameStr(event->datname), NAMEDATALEN,
								MyProcPort->database_name, encoding);
		if (MyProcPort->user_name)
			pgd_sanitize_string(NameStr(event->usename), NAMEDATALEN,
								MyProcPort->user_name, encoding);
		pgd_event_set_client_addr(event, addr);

		/*
		 * A refused process has not applied its startup options yet, so
		 * the application_name setting is still empty; the startup packet's
		 * value is kept in the Port for the log line prefix.
		 */
		if (type == PGD_EV_REJECTED && MyProcPort->application_name)
			appname = MyProcPort->application_name;
	}
	if (appname != NULL)
		pgd_sanitize_string(event->application_name, NAMEDATALEN,
							appname, encoding);
}

void
pgd_event_set_client_addr(PgdEvent *event, const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
	{
		event->client_family = AF_INET;
		memcpy(event->client_addr,
			   &((const struct sockaddr_in *) addr)->sin_addr, 4);
		event->client_port = ntohs(((const struct sockaddr_in *) addr)->sin_port);
	}
	else if (addr->sa_family == AF_INET6)
	{
		event->client_family = AF_INET6;
		memcpy(event->client_addr,
			   &((const struct sockaddr_in6 *) addr)->sin6_addr, 16);
		event->client_port = ntohs(((const struct sockaddr_in6 *) addr)->sin6_port);
	}
	/*
	 * Unix-domain sockets have no address, and port -1, as in
	 * pg_stat_activity.
	 */
	else if (addr->sa_family == AF_UNIX)
		event->client_port = -1;
}

static void
pgd_client_authentication(Port *port, int status)
{
	static bool callback_registered = false;

	if (prev_ClientAuthentication_hook)
		prev_ClientAuthentication_hook(port, status);

	/* Only client backends are tracked; WAL senders are not. */
	if (status != STATUS_OK || MyBackendType != B_BACKEND)
		return;

	if (!callback_registered)
	{
		RegisterXactCallback(pgd_xact_callback, NULL);
		callback_registered = true;
	}
	pgd_session_pending = true;
}

/*
 * Classify a FATAL raised while a connection was being set up.  Returns
 * PGD_R_NONE for failures that are not refusals (a protocol error, say).
 */
static PgdReason
pgd_rejection_reason(const ErrorData *edata)
{
	switch (edata->sqlerrcode)
	{
		case ERRCODE_TOO_MANY_CONNECTIONS:
			/* message_id is the untranslated format string. */
			if (edata->message_id &&
				strncmp(edata->message_id, "too many connections for role", 29) == 0)
				return PGD_R_ROLE_CONNECTION_LIMIT;
			if (edata->message_id &&
				strncmp(edata->message_id, "too many connections for database", 33) == 0)
				return PGD_R_DATABASE_CONNECTION_LIMIT;
			return PGD_R_TOO_MANY_CONNECTIONS;
		case ERRCODE_INVALID_PASSWORD:
		case ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION:
			return PGD_R_AUTHENTICATION_FAILED;
		case ERRCODE_UNDEFINED_DATABASE:
			return PGD_R_DATABASE_DOES_NOT_EXIST;
		case ERRCODE_CANNOT_CONNECT_NOW:
			return PGD_R_CANNOT_CONNECT_NOW;
		default:
			return PGD_R_NONE;
	}
}

/*
 * Record refused connection attempts.  Runs for every message of every
 * process, so the filter comes first and is cheap.  Never raises an error:
 * we are inside error reporting already.
 */
/* A setting in milliseconds the way a user would write it. */
static char *
pgd_format_setting_ms(int32 ms)
{
	if (ms % 60000 == 0)
		return psprintf("%dmin", ms / 60000);
	if (ms % 1000 == 0)
		return psprintf("%ds", ms / 1000);
	return psprintf("%dms", ms);
}

/*
 * Why pooldiag closed a session, in words: the primary message, a detail
 * with the numbers, a hint, and the SQLSTATE PostgreSQL's own timeouts use
 * (57P05 idle_session_timeout, 25P03 for an idle transaction), so that pools
 * and drivers that know those treat it the same way.  Used for the FATAL the
 * closed backend sends and for the enforcer's log line.  Allocates in the
 * current memory context; returns false for an unknown reason.
 */
bool
pgd_close_explanation(const PgdCloseRequest *request, PgdCloseText *text)
{
	double		idle_s = request->idle_us / 1e6;

	text->hint = "Configure the connection pool to retire idle connections before pooldiag closes them, or to validate them before use.";
	switch ((PgdReason) request->reason)
	{
		case PGD_R_IDLE_TIMEOUT:
			text->sqlerrcode = ERRCODE_IDLE_SESSION_TIMEOUT;
			text->message = "terminating connection due to pooldiag idle timeout";
			text->detail = psprintf("The session was idle for %.1f s; \"pooldiag.idle_timeout\" is %s.",
									idle_s, pgd_format_setting_ms(request->limit_ms));
			return true;
		case PGD_R_MAX_LIFETIME:
			text->sqlerrcode = ERRCODE_IDLE_SESSION_TIMEOUT;
			text->message = "terminating connection due to pooldiag maximum lifetime";
			text->detail = psprintf("The session was %.1f s old and idle for %.1f s; \"pooldiag.max_lifetime\" is %s, less %.1f%% jitter for this session.",
									request->age_us / 1e6, idle_s,
									pgd_format_setting_ms(request->limit_ms),
									request->lifetime_cut * 100.0);
			return true;
		case PGD_R_IDLE_IN_TRANSACTION_TIMEOUT:
			text->sqlerrcode = ERRCODE_IDLE_IN_TRANSACTION_SESSION_TIMEOUT;
			text->message = "terminating connection due to pooldiag idle-in-transaction timeout";
			text->detail = psprintf("The session was idle in a transaction for %.1f s; \"pooldiag.idle_in_transaction_timeout\" is %s.",
									idle_s, pgd_format_setting_ms(request->limit_ms));
			text->hint = "Make the application end its transactions before it returns connections to the pool.";
			return true;
		case PGD_R_DRAIN:
			text->sqlerrcode = ERRCODE_IDLE_SESSION_TIMEOUT;
			text->message = "terminating connection due to pooldiag drain";
			text->detail = psprintf("pooldiag.drain() asked for this session to be closed once idle; it was idle for %.1f s.",
									idle_s);
			return true;
		default:
			return false;
	}
}

/*
 * The FATAL that die() raises when the enforcer closed this session says
 * "administrator command".  Tell the client and the server log what really
 * happened.  Runs inside error reporting, in ErrorContext: it must not
 * raise an error.
 */
static void
pgd_explain_close(ErrorData *edata)
{
	PgdCloseRequest request;
	PgdCloseText text;

	if (edata->elevel != FATAL || edata->sqlerrcode != ERRCODE_ADMIN_SHUTDOWN ||
		!pgd_registry_my_close_request(&request) ||
		!pgd_close_explanation(&request, &text))
		return;
	edata->sqlerrcode = text.sqlerrcode;
	edata->message = pstrdup(text.message);
	edata->detail = text.detail;
	edata->hint = pstrdup(text.hint);
}

static void
pgd_emit_log(ErrorData *edata)
{
	pgd_explain_close(edata);

	if (edata->elevel == FATAL &&
		!pgd_rejection_recorded &&
		pgd_my_slot == NULL &&
		IsUnderPostmaster &&
		MyBackendType == B_BACKEND)
	{
		PgdReason	reason = pgd_rejection_reason(edata);

		if (reason != PGD_R_NONE)
		{
			PgdEvent	event;

			pgd_event_from_own_session(&event, PGD_EV_REJECTED, reason);
			event.event_time = GetCurrentTimestamp();
			event.detail[PGD_D_REJECTED_SQLSTATE] = edata->sqlerrcode;
			pgd_ring_append(&event);
			pgd_capacity_count_rejection(reason);
			pgd_rejection_recorded = true;
		}
	}

	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static void
pgd_establish_session(void)
{
	PgdEvent	event;
	TimestampTz now = GetCurrentTimestamp();

	pgd_session_pending = false;
	pgd_registry_attach(now);
	if (pgd_my_slot == NULL)
		return;
	pgd_registry_publish_policy(pgd_own_policy());
	pgd_declared_publish_at_connect();
	before_shmem_exit(pgd_session_exit, (Datum) 0);

	pgd_event_from_own_session(&event, PGD_EV_CONNECT, PGD_R_NONE);
	event.event_time = now;
	pgd_ring_append(&event);
}

/* A checkout started: remember who it started as (once per checkout). */
static inline void
pgd_note_checkout_identity(void)
{
	strlcpy(pgd_checkout_appname, application_name ? application_name : "",
			NAMEDATALEN);
}

/* Start a checkout if the session is idle; the per-statement path. */
static inline void
pgd_note_statement_start(void)
{
	/* Already checked out (most statements), or not a tracked session. */
	if (pgd_my_slot == NULL || likely(pgd_my_slot->checkout_start != 0))
		return;

	pgd_registry_begin_checkout(GetCurrentStatementStartTimestamp());
	pgd_note_checkout_identity();

	if (unlikely(pgd_log_checkouts == PGD_LOG_CHECKOUTS_ALL))
	{
		PgdEvent	event;

		pgd_event_from_own_session(&event, PGD_EV_CHECKOUT, PGD_R_NONE);
		event.event_time = pgd_my_slot->checkout_start;
		pgd_ring_append(&event);
	}
}

static void
pgd_checkin(TimestampTz end)
{
	TimestampTz start = pgd_my_slot->checkout_start;
	int64		hold_us;

	memset(&pgd_block, 0, sizeof(pgd_block));
	if (start == 0)
		return;

	pgd_registry_end_checkout(end);
	hold_us = end > start ? end - start : 0;

	if (pgd_log_checkouts == PGD_LOG_CHECKOUTS_ALL ||
		(pgd_log_checkouts == PGD_LOG_CHECKOUTS_SLOW &&
		 hold_us >= (int64) pgd_log_min_hold_ms * 1000))
	{
		PgdEvent	event;

		pgd_event_from_own_session(&event, PGD_EV_CHECKIN, PGD_R_NONE);
		/* The identity of the checkout, not what it was changed to. */
		pgd_sanitize_string(event.application_name, NAMEDATALEN,
							pgd_checkout_appname, GetDatabaseEncoding());
		event.event_time = end;
		event.detail[PGD_D_CHECKIN_START] = start;
		event.detail[PGD_D_CHECKIN_HOLD_US] = hold_us;
		pgd_ring_append(&event);
	}
}

static void
pgd_executor_start(QueryDesc *queryDesc, int eflags)
{
	pgd_note_statement_start();

	if (prev_ExecutorStart_hook)
		prev_ExecutorStart_hook(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
pgd_call_process_utility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	if (prev_ProcessUtility_hook)
		prev_ProcessUtility_hook(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

/*
 * A COMMIT, ROLLBACK or PREPARE TRANSACTION returned: note how the block
 * will end.  'top_aborted' and 'sub_aborted' describe the block before the
 * statement ran.
 */
static void
pgd_note_block_end(const TransactionStmt *stmt, bool top_aborted,
				   bool sub_aborted)
{
	pgd_block.chain = stmt->chain;

	if (top_aborted)
	{
		/*
		 * The top level aborted already: xact.c only cleans up, and no
		 * callback fires.  The block is over now, unless it chains.
		 */
		if (!stmt->chain)
			pgd_checkin(GetCurrentTimestamp());
		return;
	}

	if (sub_aborted)
	{
		/* COMMIT, ROLLBACK and PREPARE all roll back: an ABORT event. */
		pgd_block.ending = PGD_END_ROLLBACK;
		return;
	}

	switch (stmt->kind)
	{
		case TRANS_STMT_COMMIT:
			pgd_block.ending = PGD_END_COMMIT;
			break;
		case TRANS_STMT_ROLLBACK:
			pgd_block.ending = PGD_END_ROLLBACK;
			break;
		case TRANS_STMT_PREPARE:
			pgd_block.ending = PGD_END_PREPARE;
			break;
		default:
			break;
	}
}

/*
 * Is this a session set-up statement outside any checkout?  SET, RESET and
 * DISCARD sent on their own, outside a transaction block, configure the
 * connection rather than use it: PgBouncer sends SET application_name (and
 * its other tracked parameters) before it forwards a client's transaction
 * to a server connection, and DISCARD ALL when it takes one back; drivers
 * send SETs when they hand a connection out.  Counting those as checkouts
 * would make one client transaction look like two.  Inside a transaction
 * block, or while checked out, they are part of the checkout as usual.
 */
static bool
pgd_is_session_setup(Node *parsetree, ProcessUtilityContext context)
{
	return context == PROCESS_UTILITY_TOPLEVEL &&
		pgd_my_slot->checkout_start == 0 &&
		(IsA(parsetree, VariableSetStmt) || IsA(parsetree, DiscardStmt)) &&
		!IsTransactionBlock();
}

static void
pgd_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		top_aborted = false;
	bool		sub_aborted = false;

	if (pgd_my_slot == NULL)
	{
		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		return;
	}

	if (pgd_is_session_setup(parsetree, context))
		pgd_setup_statement = true;
	else
		pgd_note_statement_start();

	if (IsA(parsetree, TransactionStmt))
	{
		bool		aborted = IsAbortedTransactionBlockState();

		/* A failed subtransaction leaves the top level alive. */
		sub_aborted = aborted && GetCurrentTransactionNestLevel() > 1;
		top_aborted = aborted && !sub_aborted;
	}

	pgd_utility_depth++;
	PG_TRY();
	{
		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		pgd_utility_depth--;
	}
	PG_END_TRY();

	if (IsA(parsetree, TransactionStmt) && pgd_utility_depth == 0)
	{
		TransactionStmt *stmt = (TransactionStmt *) parsetree;

		switch (stmt->kind)
		{
			case TRANS_STMT_BEGIN:
			case TRANS_STMT_START:
				pgd_block.explicit_block = true;
				break;
			case TRANS_STMT_COMMIT:
			case TRANS_STMT_ROLLBACK:
			case TRANS_STMT_PREPARE:
				pgd_note_block_end(stmt, top_aborted, sub_aborted);
				break;
			default:
				break;
		}
	}
}

/*
 * Does an ABORT event end the checkout?  See the header comment.
 */
static bool
pgd_abort_ends_checkout(void)
{
	switch (pgd_block.ending)
	{
		case PGD_END_ROLLBACK:
			return !pgd_block.chain;
		case PGD_END_COMMIT:
		case PGD_END_PREPARE:
			/* The end failed; xact.c never chains a failed commit. */
			return true;
		case PGD_END_NONE:
			break;
	}

	/*
	 * An error.  Inside a live explicit block it leaves the session idle in
	 * an aborted transaction, still checked out.  (TransactionBlockStatusCode
	 * is still 'T' here: the block turns aborted after the callbacks ran.)
	 */
	return !(pgd_block.explicit_block && TransactionBlockStatusCode() == 'T');
}

static void
pgd_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/*
			 * InitPostgres() is about to commit: every connection check has
			 * passed, and per-role and per-database settings are in effect.
			 */
			if (unlikely(pgd_session_pending))
				pgd_establish_session();
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (pgd_my_slot == NULL || pgd_utility_depth > 0)
				return;
			if (pgd_block.ending == PGD_END_COMMIT && pgd_block.chain)
			{
				/* COMMIT AND CHAIN succeeded: the new transaction goes on. */
				pgd_block.ending = PGD_END_NONE;
				pgd_block.chain = false;
				return;
			}
			pgd_setup_statement = false;
			pgd_checkin(GetCurrentTransactionStopTimestamp());
			break;

		case XACT_EVENT_ABORT:
			if (pgd_my_slot == NULL || pgd_utility_depth > 0)
				return;
			if (!pgd_abort_ends_checkout())
			{
				/* Chained or aborted block: still checked out. */
				pgd_block.ending = PGD_END_NONE;
				pgd_block.chain = false;
				return;
			}

			/*
			 * A statement that failed in parse analysis or planning never
			 * reached the executor, but the session did leave idle for it.
			 * (A commit without a checkout is not counted the same way:
			 * idle backends run empty transactions of their own, e.g. to
			 * catch up on invalidation messages.)
			 */
			if (pgd_my_slot->checkout_start == 0 && !pgd_setup_statement)
			{
				pgd_registry_begin_checkout(GetCurrentStatementStartTimestamp());
				pgd_note_checkout_identity();
			}
			pgd_setup_statement = false;
			pgd_checkin(GetCurrentTransactionStopTimestamp());
			break;

		default:
			break;
	}
}

/*
 * The session ends.  Runs before ShutdownPostgres, possibly with a
 * transaction still open, so it touches nothing but shared memory.
 */
static void
pgd_session_exit(int code, Datum arg)
{
	PgdEvent	event;
	TimestampTz now;
	PgdReason	reason;

	if (pgd_my_slot == NULL)
		return;

	now = GetCurrentTimestamp();
	if (pgd_my_slot->checkout_start != 0)
		pgd_registry_end_checkout(now);

	switch (pgStatSessionEndCause)
	{
		case DISCONNECT_CLIENT_EOF:
			reason = PGD_R_CLIENT_EOF;
			break;
		case DISCONNECT_FATAL:
			reason = PGD_R_FATAL;
			break;
		case DISCONNECT_KILLED:
			reason = PGD_R_KILLED;
			break;
		default:
			reason = PGD_R_NORMAL;
			break;
	}

	pgd_event_from_own_session(&event, PGD_EV_DISCONNECT, reason);
	event.event_time = now;
	event.detail[PGD_D_DISCONNECT_CHECKOUTS] = pgd_my_slot->checkouts;
	event.detail[PGD_D_DISCONNECT_HOLD_US] = pgd_my_slot->hold_time_us;
	event.detail[PGD_D_DISCONNECT_IDLE_US] =
		pgd_my_slot->idle_time_us + (now - pgd_my_slot->last_checkin);
	pgd_ring_append(&event);

	pgd_pool_leave(reason);
	pgd_registry_detach();
}
