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
 * say whether the block goes on: an error inside BEGIN ... leaves the
 * session idle in an aborted transaction (still checked out), and the
 * ROLLBACK that follows ends the block without firing any callback.  The
 * utility hook therefore remembers BEGIN, and the COMMIT/ROLLBACK that will
 * end the block; see pgd_block and pgd_xact_callback().
 *
 * Procedures may COMMIT or ROLLBACK while a CALL or DO runs.  Those
 * transaction ends happen inside the statement and do not end the checkout;
 * pgd_procedure_depth tells them apart.
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
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "tcop/utility.h"
#include "utils/elog.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "compat.h"
#include "event_ring.h"
#include "hooks.h"
#include "policy.h"
#include "pooldiag.h"
#include "registry.h"

static ClientAuthentication_hook_type prev_ClientAuthentication_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility_hook = NULL;

/* Authenticated, waiting for InitPostgres() to commit. */
static bool pgd_session_pending = false;

/* A rejection has been recorded for this process already. */
static bool pgd_rejection_recorded = false;

/*
 * Where the current transaction block stands, as far as the transaction
 * callbacks cannot tell by themselves.
 */
typedef struct PgdBlockState
{
	bool		explicit_block; /* inside BEGIN ... */
	bool		ending;			/* a COMMIT/ROLLBACK/PREPARE is running */
	bool		chained;		/* ... AND CHAIN: the block goes on */
} PgdBlockState;

static PgdBlockState pgd_block;

/* Nesting of CALL and DO statements that may end transactions inside. */
static int	pgd_procedure_depth = 0;

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
 */
void
pgd_event_from_own_session(PgdEvent *event, PgdEventType type, PgdReason reason)
{
	memset(event, 0, sizeof(PgdEvent));
	event->type = type;
	event->reason = reason;
	event->pid = MyProcPid;
	event->backend_start = MyStartTimestamp;

	if (MyProcPort != NULL)
	{
		const struct sockaddr *addr = (const struct sockaddr *) &MyProcPort->raddr.addr;

		if (MyProcPort->database_name)
			namestrcpy(&event->datname, MyProcPort->database_name);
		if (MyProcPort->user_name)
			namestrcpy(&event->usename, MyProcPort->user_name);
		pgd_event_set_client_addr(event, addr);
	}
	if (application_name != NULL)
		strlcpy(event->application_name, application_name, NAMEDATALEN);
}

void
pgd_event_set_client_addr(PgdEvent *event, const struct sockaddr *addr)
{
	if (addr->sa_family == AF_INET)
	{
		event->client_family = AF_INET;
		memcpy(event->client_addr,
			   &((const struct sockaddr_in *) addr)->sin_addr, 4);
	}
	else if (addr->sa_family == AF_INET6)
	{
		event->client_family = AF_INET6;
		memcpy(event->client_addr,
			   &((const struct sockaddr_in6 *) addr)->sin6_addr, 16);
	}
	/* Unix-domain sockets have no address, as in pg_stat_activity. */
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
static void
pgd_emit_log(ErrorData *edata)
{
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
	before_shmem_exit(pgd_session_exit, (Datum) 0);

	pgd_event_from_own_session(&event, PGD_EV_CONNECT, PGD_R_NONE);
	event.event_time = now;
	pgd_ring_append(&event);
}

/* Start a checkout if the session is idle; the per-statement path. */
static inline void
pgd_note_statement_start(void)
{
	/* Already checked out (most statements), or not a tracked session. */
	if (pgd_my_slot == NULL || likely(pgd_my_slot->checkout_start != 0))
		return;

	pgd_registry_begin_checkout(GetCurrentStatementStartTimestamp());

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

static void
pgd_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;

	if (pgd_my_slot == NULL)
	{
		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		return;
	}

	pgd_note_statement_start();

	if (IsA(parsetree, TransactionStmt))
	{
		TransactionStmt *stmt = (TransactionStmt *) parsetree;
		bool		was_aborted = IsAbortedTransactionBlockState();

		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);

		switch (stmt->kind)
		{
			case TRANS_STMT_BEGIN:
			case TRANS_STMT_START:
				pgd_block.explicit_block = true;
				break;
			case TRANS_STMT_COMMIT:
			case TRANS_STMT_ROLLBACK:
			case TRANS_STMT_PREPARE:
				if (stmt->chain)
				{
					/* An aborted block chains without any callback. */
					if (!was_aborted)
						pgd_block.chained = true;
				}
				else if (was_aborted)
				{
					/*
					 * Ending an aborted block fires no transaction callback:
					 * the block is over once this statement returns.
					 */
					pgd_checkin(GetCurrentTimestamp());
				}
				else
					pgd_block.ending = true;
				break;
			default:
				break;
		}
	}
	else if (IsA(parsetree, CallStmt) || IsA(parsetree, DoStmt))
	{
		pgd_procedure_depth++;
		PG_TRY();
		{
			pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
									 params, queryEnv, dest, qc);
		}
		PG_FINALLY();
		{
			pgd_procedure_depth--;
		}
		PG_END_TRY();
	}
	else
		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
}

static void
pgd_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			/*
			 * InitPostgres() is about to commit: every connection check has
			 * passed.  Attach now rather than at COMMIT, while catalog look-
			 * ups (superuser_arg()) are still allowed.
			 */
			if (unlikely(pgd_session_pending))
				pgd_establish_session();
			break;

		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			if (pgd_my_slot == NULL || pgd_procedure_depth > 0)
				return;
			if (pgd_block.chained)
			{
				pgd_block.chained = false;
				return;
			}
			pgd_checkin(GetCurrentTransactionStopTimestamp());
			break;

		case XACT_EVENT_ABORT:
			if (pgd_my_slot == NULL || pgd_procedure_depth > 0)
				return;
			if (pgd_block.chained)
			{
				pgd_block.chained = false;
				return;
			}

			/*
			 * An error inside an explicit block leaves the session idle in
			 * an aborted transaction: still checked out.  Everything else
			 * that aborts (an autocommit statement, an implicit block, a
			 * ROLLBACK, a failing COMMIT) ends the transaction.
			 */
			if (pgd_block.explicit_block && !pgd_block.ending &&
				TransactionBlockStatusCode() == 'T')
				return;

			/*
			 * A statement that failed in parse analysis or planning never
			 * reached the executor, but the session did leave idle for it.
			 * (A commit without a checkout is not counted the same way:
			 * idle backends run empty transactions of their own, e.g. to
			 * catch up on invalidation messages.)
			 */
			if (pgd_my_slot->checkout_start == 0)
				pgd_registry_begin_checkout(GetCurrentStatementStartTimestamp());
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

	pgd_registry_detach();
}
