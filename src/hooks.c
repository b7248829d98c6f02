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
 *	 XACT_EVENT_ABORT			a statement that failed before reaching the
 *								executor still was a checkout.
 *	 ReadyForQuery ('Z' sent)	idle again outside a transaction block: the
 *								checkout ends (checkin).
 *	 before_shmem_exit			the session ends: "disconnect" with the cause
 *								from pgStatSessionEndCause.
 *
 * A checkout ends when the session is idle again outside a transaction
 * block, which is the moment the backend sends ReadyForQuery with status
 * 'I'.  Ends of transactions are not that moment: a COMMIT inside one
 * simple Query message of several statements, or among the Executes of a
 * pipeline before its Sync, ends a transaction while the session stays
 * busy; an error inside a transaction block ends nothing; a ROLLBACK of a
 * block that already aborted fires no transaction callback at all; a
 * COMMIT AND CHAIN goes on, unless the commit failed.  ReadyForQuery says
 * it all in its status byte:
 *
 *	 'I'		the checkout ends, at the time core recorded when it reported
 *				the session idle just before (pg_stat_activity's
 *				state_change, so pooldiag's idle clock and core's agree; the
 *				current time if track_activities is off);
 *	 'T', 'E'	a transaction block goes on: still checked out.
 *
 * The transaction callbacks then only need to count statements that failed
 * before reaching our hooks, and a commit costs nothing here.
 *
 * ReadyForQuery is seen by wrapping the putmessage method of core's
 * PqCommMethods (the table that parallel workers replace to redirect their
 * messages).  The wrapper costs one comparison per message sent.
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
#include "libpq/libpq.h"
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

/* core's methods to send protocol messages, which pgd_putmessage() wraps */
static const PQcommMethods *pgd_prev_comm_methods = NULL;
static PQcommMethods pgd_comm_methods;

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
 * Session set-up statements (see pgd_is_session_setup()) outside a
 * checkout.  A transaction that aborts with no checkout open is counted as
 * one (a statement failed before reaching our hooks) unless the set-up
 * statement itself is what failed; one that succeeded does not hide a
 * later statement's failure in the same transaction (a SET and a failing
 * statement in one pipeline).  Cleared when the busy period ends.
 */
typedef enum PgdSetupState
{
	PGD_SETUP_NONE = 0,
	PGD_SETUP_RUNNING,			/* a set-up statement is running */
	PGD_SETUP_DONE				/* one completed; nothing else ran since */
} PgdSetupState;

static PgdSetupState pgd_setup_state = PGD_SETUP_NONE;

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
static void pgd_wrap_comm_methods(void);

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
	/* The largest unit that divides the value, as SHOW prints it. */
	if (ms == 0)
		return pstrdup("0");
	if (ms % 86400000 == 0)
		return psprintf("%dd", ms / 86400000);
	if (ms % 3600000 == 0)
		return psprintf("%dh", ms / 3600000);
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
	pgd_wrap_comm_methods();

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

	if (start == 0)
		return;

	/* The end is a time core took; never before the start we took. */
	if (end < start)
		end = start;
	pgd_registry_end_checkout(end);
	hold_us = end - start;

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

/*
 * The backend is about to send ReadyForQuery: the busy period is over.
 * The message is one byte, the transaction status.  Runs inside
 * pq_putmessage(), so it must not raise an error (it cannot: shared memory
 * and the lock-free event ring only).
 */
static void
pgd_ready_for_query(const char *msg, size_t len)
{
	volatile PgBackendStatus *be = MyBEEntry;
	TimestampTz end;

	pgd_setup_state = PGD_SETUP_NONE;
	/* In a block ('T', 'E'), the checkout goes on. */
	if (pgd_my_slot == NULL || len != 1 || msg[0] != 'I' ||
		pgd_my_slot->checkout_start == 0)
		return;

	/*
	 * Core has just reported the session idle and taken the time for it; we
	 * are its only writer, so our own entry can be read as is.
	 */
	if (be != NULL && be->st_state == STATE_IDLE)
		end = be->st_state_start_timestamp;
	else
		end = GetCurrentTimestamp();
	pgd_checkin(end);
}

/* ReadyForQuery: see to the checkout, then send it. */
static pg_noinline int
pgd_putmessage_ready(char msgtype, const char *s, size_t len)
{
	pgd_ready_for_query(s, len);
	return pgd_prev_comm_methods->putmessage(msgtype, s, len);
}

/*
 * Our putmessage method: core's, after a look at ReadyForQuery.  Every
 * message the backend sends passes here (each row of a result, too), so this
 * is one comparison and a tail call; the rest is out of line.
 */
static int
pgd_putmessage(char msgtype, const char *s, size_t len)
{
	if (unlikely(msgtype == 'Z'))
		return pgd_putmessage_ready(msgtype, s, len);
	return pgd_prev_comm_methods->putmessage(msgtype, s, len);
}

/*
 * Put pgd_putmessage() in front of core's methods, once, for the session's
 * lifetime.  Client backends never replace PqCommMethods after pq_init(),
 * which ran long before the session is established; only parallel workers
 * (which are not tracked) redirect theirs.
 */
static void
pgd_wrap_comm_methods(void)
{
	if (pgd_prev_comm_methods != NULL || PqCommMethods == NULL)
		return;
	pgd_prev_comm_methods = PqCommMethods;
	pgd_comm_methods = *PqCommMethods;
	pgd_comm_methods.putmessage = pgd_putmessage;
	PqCommMethods = &pgd_comm_methods;
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
 * Is this a session set-up statement outside any checkout?  SET, RESET and
 * DISCARD sent on their own, outside a transaction block, configure the
 * connection rather than use it: PgBouncer sends SET application_name (and
 * its other tracked parameters) before it forwards a client's transaction
 * to a server connection, and DISCARD ALL when it takes one back; drivers
 * send SETs when they hand a connection out.  Counting those as checkouts
 * would make one client transaction look like two.  Inside a transaction
 * block, or while checked out, they are part of the checkout as usual.
 *
 * When more than one of its tracked parameters differs (application_name
 * and client_encoding, say, when clients of two drivers share a pool),
 * PgBouncer sends them in one query message, "SET a='x';SET b='y';", which
 * PostgreSQL runs as an implicit transaction block; they are set-up all the
 * same.  A real statement after them in the message starts the checkout
 * when it reaches our hooks, and one that fails before (in parse analysis)
 * is counted by the ABORT event, since the set-up statements completed
 * (pgd_setup_state).  An explicit block cannot be open while no checkout is
 * (BEGIN starts one), so no test of the block is needed.
 */
static bool
pgd_is_session_setup(Node *parsetree, ProcessUtilityContext context)
{
	return context == PROCESS_UTILITY_TOPLEVEL &&
		pgd_my_slot->checkout_start == 0 &&
		(IsA(parsetree, VariableSetStmt) || IsA(parsetree, DiscardStmt));
}

static void
pgd_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *parsetree = pstmt->utilityStmt;
	bool		setup;

	if (pgd_my_slot == NULL)
	{
		pgd_call_process_utility(pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
		return;
	}

	setup = pgd_is_session_setup(parsetree, context);
	if (setup)
		pgd_setup_state = PGD_SETUP_RUNNING;
	else
		pgd_note_statement_start();

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

	if (setup)
		pgd_setup_state = PGD_SETUP_DONE;
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

		case XACT_EVENT_ABORT:
			if (pgd_my_slot == NULL || pgd_utility_depth > 0)
				return;

			/*
			 * A statement that failed in parse analysis or planning never
			 * reached the executor, but the session did leave idle for it;
			 * unless what failed is a set-up statement itself.
			 */
			if (pgd_my_slot->checkout_start == 0)
			{
				if (pgd_setup_state == PGD_SETUP_RUNNING)
					return;
				pgd_note_statement_start();
			}
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
