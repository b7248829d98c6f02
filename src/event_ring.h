/*-------------------------------------------------------------------------
 *
 * event_ring.h
 *		Fixed-size event records and the shared-memory ring that carries
 *		them from the backends to the worker.  See event_ring.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_EVENT_RING_H
#define POOLDIAG_EVENT_RING_H

#include "port/atomics.h"
#include "utils/timestamp.h"

/* Event kinds.  Names are in pgd_event_name(); never reorder (stored). */
typedef enum PgdEventType
{
	PGD_EV_CONNECT = 1,
	PGD_EV_DISCONNECT,
	PGD_EV_CHECKOUT,
	PGD_EV_CHECKIN,
	PGD_EV_REJECTED,
	PGD_EV_TERMINATE,
	PGD_EV_WOULD_TERMINATE,
	PGD_EV_LEAK_SUSPECT,
	PGD_EV_SATURATION			/* capacity.c: use crossed saturation_warning */
} PgdEventType;

/* Reasons.  Names are in pgd_reason_name(). */
typedef enum PgdReason
{
	PGD_R_NONE = 0,
	/* disconnect */
	PGD_R_NORMAL,
	PGD_R_CLIENT_EOF,
	PGD_R_FATAL,
	PGD_R_KILLED,
	/* rejected */
	PGD_R_TOO_MANY_CONNECTIONS,
	PGD_R_ROLE_CONNECTION_LIMIT,
	PGD_R_DATABASE_CONNECTION_LIMIT,
	PGD_R_AUTHENTICATION_FAILED,
	PGD_R_DATABASE_DOES_NOT_EXIST,
	PGD_R_CANNOT_CONNECT_NOW,	/* last of the rejection reasons */
	/* terminate, would_terminate */
	PGD_R_IDLE_TIMEOUT,
	PGD_R_MAX_LIFETIME,
	PGD_R_IDLE_IN_TRANSACTION_TIMEOUT,
	PGD_R_DRAIN,
	/* leak_suspect (a long checkout has none) */
	PGD_R_IDLE_WHILE_POOL_BUSY
} PgdReason;

#define PGD_NUM_REJECTION_REASONS \
	(PGD_R_CANNOT_CONNECT_NOW - PGD_R_TOO_MANY_CONNECTIONS + 1)

/*
 * One event.  Fixed size, so that appending is a copy into a ring cell.
 * The meaning of detail[] depends on the event type; flush.c turns it into
 * the jsonb "detail" column (see pgd_event_detail_json()).
 */
typedef struct PgdEvent
{
	uint64		position;		/* ring position, set by the ring */
	TimestampTz event_time;
	TimestampTz backend_start;	/* 0 if unknown */
	int32		pid;
	uint8		type;			/* PgdEventType */
	uint8		reason;			/* PgdReason */
	uint8		client_family;	/* AF_INET, AF_INET6 or 0 (none/Unix) */
	uint8		client_addr[16];
	int32		client_port;	/* TCP port; -1 Unix-domain socket; 0 unknown */
	NameData	datname;
	NameData	usename;
	char		application_name[NAMEDATALEN];
	int64		detail[4];
} PgdEvent;

/* detail[] slots per type, shared by producers and flush.c. */
#define PGD_D_DISCONNECT_CHECKOUTS		0
#define PGD_D_DISCONNECT_HOLD_US		1
#define PGD_D_DISCONNECT_IDLE_US		2
#define PGD_D_CHECKIN_START				0
#define PGD_D_CHECKIN_HOLD_US			1
#define PGD_D_REJECTED_SQLSTATE			0
#define PGD_D_REJECTED_REPEATS			1	/* folded rows only, see fold.c */
#define PGD_D_REJECTED_FIRST_TIME		2
#define PGD_D_REJECTED_LAST_TIME		3
#define PGD_D_TERMINATE_IDLE_US			0
#define PGD_D_TERMINATE_DEADLINE		1
#define PGD_D_TERMINATE_CHECKOUTS		2
#define PGD_D_LEAK_START				0
#define PGD_D_LEAK_HOLD_US				1
#define PGD_D_LEAK_THRESHOLD_MS			2
#define PGD_D_SATURATION_IN_USE			0	/* highest use since the last scan */
#define PGD_D_SATURATION_SLOTS			1
#define PGD_D_SATURATION_MARK			2	/* sessions that reach the warning */
#define PGD_D_SATURATION_CROSSINGS		3
#define PGD_D_IDLE_LEAK_SINCE			0	/* reason idle_while_pool_busy */
#define PGD_D_IDLE_LEAK_IDLE_US			1
#define PGD_D_IDLE_LEAK_THRESHOLD_MS	2
#define PGD_D_IDLE_LEAK_POOL_BUSY		3

extern const char *pgd_event_name(uint8 type);
extern const char *pgd_reason_name(uint8 reason);

extern Size pgd_ring_shmem_size(void);
extern void pgd_ring_shmem_init(void);

/* Producers: any process, even one without a PGPROC. */
extern bool pgd_ring_append(PgdEvent *event);

/* The single consumer (the worker). */
extern int	pgd_ring_peek(PgdEvent *events, int max_events);
extern void pgd_ring_release(int nevents);
extern void pgd_ring_discard_oldest(uint64 keep);

/* Readers: a non-destructive copy of what is queued now, chunk by chunk. */
typedef struct PgdRingCursor
{
	uint64		next;			/* next position to look at */
	uint64		end;			/* head when the cursor was started */
} PgdRingCursor;
extern void pgd_ring_cursor_init(PgdRingCursor *cursor);
extern bool pgd_ring_read(PgdRingCursor *cursor, PgdEvent *events,
						  int max_events, int *nevents);

/* Counters for pooldiag.health. */
typedef struct PgdRingCounters
{
	uint64		queued;
	uint64		appended;
	uint64		dropped;
	uint64		discarded;
	uint32		capacity;
} PgdRingCounters;
extern void pgd_ring_counters(PgdRingCounters *counters);

struct Latch;

/*
 * The worker publishes its latch here (NULL when it is not running);
 * producers set it when the ring is half full, pooldiag.drain() to act now.
 */
extern void pgd_ring_set_consumer_latch(struct Latch *latch);
extern void pgd_ring_wake_consumer(void);

#endif							/* POOLDIAG_EVENT_RING_H */
