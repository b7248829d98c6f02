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

/* Is this row one that stands for folded attempts? */
static inline bool
pgd_fold_is_folded_row(const PgdEvent *ev)
{
	return ev->type == PGD_EV_REJECTED &&
		ev->detail[PGD_D_REJECTED_REPEATS] > 0;
}

#endif							/* POOLDIAG_FOLD_H */
