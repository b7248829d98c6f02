/*-------------------------------------------------------------------------
 *
 * sanitize.c
 *		One rule for every string an event carries that a client could
 *		have chosen: user and database names and application_name.
 *
 * Why: the startup packet is read before authentication, and PostgreSQL
 * checks the user and database names only by looking them up.  A client
 * that is refused, even by pg_hba.conf, can therefore make a rejected event
 * carry any bytes (except NUL), and core cuts those names at NAMEDATALEN - 1
 * bytes, which may split a multibyte character.  Names from the catalogs
 * are not safe either: roles are shared by databases of different
 * encodings.  Text that is invalid in the database encoding breaks whoever
 * reads pooldiag.events in another client encoding, and a dump of the table
 * that no longer restores.
 *
 * The rule: characters that are valid in the target encoding are kept;
 * every other byte is written as the four ASCII characters \xNN (what
 * PostgreSQL 16 does to application_name), so the original bytes can still
 * be read off the row.  Backslashes themselves are kept as they are: a
 * valid name may contain them (DOMAIN\user from SSPI or Kerberos), and
 * escaping them would make it differ from pg_roles.rolname and from what
 * pg_stat_activity shows.  The result is cut to fit its buffer at a
 * character or escape boundary, never inside one.
 *
 * It is applied twice (see hooks.c and flush.c): by the producer, which
 * fits the string into the event's fixed-size field, and by the consumer,
 * which checks it against the encoding of the database the row is made in.
 * It never allocates, never raises an error and takes no lock, because the
 * producer may run inside error reporting in a process without a PGPROC.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "sanitize.h"

/*
 * Copy the NUL-terminated src into dst (dstsize bytes, dstsize >= 1),
 * keeping what is valid in 'encoding' and writing every other byte as
 * \xNN.  Stops before a character or escape that would not fit, so the
 * result is always valid and never ends in part of either; a character
 * that core cut in two at the end of a name is thus dropped, not escaped,
 * whenever the escape would not fit either (as at NAMEDATALEN).  Returns
 * the length of the result.
 */
int
pgd_sanitize_string(char *dst, int dstsize, const char *src, int encoding)
{
	static const char hex[] = "0123456789abcdef";
	int			srclen;
	int			in = 0;
	int			out = 0;

	/*
	 * Each input byte yields at least one output byte, so nothing past the
	 * first dstsize - 1 can be used.  A character cut by this limit is left
	 * out like any other that does not fit: the bytes before it fill all
	 * but at most three bytes of dst, too few for an escape.
	 */
	Assert(dstsize >= 1);
	srclen = strnlen(src, dstsize - 1);
	while (in < srclen)
	{
		int			room = dstsize - 1 - out;
		int			valid = pg_encoding_verifymbstr(encoding, src + in,
													srclen - in);

		if (valid > 0)
		{
			/* A run of valid characters: as much of it as fits, whole. */
			int			n = valid <= room ? valid :
				pg_encoding_mbcliplen(encoding, src + in, valid, room);

			memcpy(dst + out, src + in, n);
			out += n;
			in += n;
			if (n < valid)
				break;
		}
		else
		{
			/* src[in] does not start a valid character. */
			unsigned char c = (unsigned char) src[in];

			if (room < 4)
				break;
			dst[out++] = '\\';
			dst[out++] = 'x';
			dst[out++] = hex[c >> 4];
			dst[out++] = hex[c & 0x0f];
			in++;
		}
	}
	dst[out] = '\0';
	return out;
}
