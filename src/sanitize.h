/*-------------------------------------------------------------------------
 *
 * sanitize.h
 *		Making strings that came from clients safe to store as text.
 *		See sanitize.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef POOLDIAG_SANITIZE_H
#define POOLDIAG_SANITIZE_H

/* Room for a string of NAMEDATALEN - 1 bytes with every byte escaped. */
#define PGD_SANITIZED_MAXLEN	(4 * (NAMEDATALEN - 1) + 1)

extern int	pgd_sanitize_string(char *dst, int dstsize, const char *src,
								int encoding);

#endif							/* POOLDIAG_SANITIZE_H */
