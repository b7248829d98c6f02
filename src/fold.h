/*-------------------------------------------------------------------------
 *
 * fold.h
 *		Folding repeated rejections into one row per key and window.
 *		See fold.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_FOLD_H
#define POOLDIAG_FOLD_H

#include "event_ring.h"

extern Size pgd_fold_shmem_size(void);
extern void pgd_fold_shmem_init(void);

/* The writer's batch path (flush.c). */
extern int	pgd_fold_batch(const PgdEvent *events, int nevents, bool drained,
						   const PgdEvent **rows);
extern void pgd_fold_publish(void);
extern void pgd_fold_end_windows(void);

/* pooldiag.health */
extern uint64 pgd_fold_count(void);

#endif							/* POOLDIAG_FOLD_H */
