/*-------------------------------------------------------------------------
 *
 * declared.h
 *		Declared client pools: user-settable settings published in the
 *		session's registry slot.  See declared.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_DECLARED_H
#define POOLDIAG_DECLARED_H

extern void pgd_define_declared_settings(void);
extern void pgd_declared_publish_at_connect(void);
extern const char *pgd_declared_pool_name(void);

#endif							/* POOLDIAG_DECLARED_H */
