/*
 * args.c
 *		Checking the arguments of deliver's SQL functions; cutting user
 *		strings on character boundaries.
 *
 * Every function rejects bad input with a clear error and an SQLSTATE
 * before it does anything; the checks that several functions share are
 * here, so that the same mistake gets the same message everywhere.
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/timestamp.h"

#include "args.h"
#include "settings.h"

/*
 * Raise an error when argument argno (called what) is NULL.
 */
void
arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be NULL", what)));
}

/*
 * An int argument that must not be NULL and must be at least lo.
 */
int32
arg_int_at_least(FunctionCallInfo fcinfo, int argno, int32 lo, const char *what)
{
	int32		v;

	arg_not_null(fcinfo, argno, what);
	v = PG_GETARG_INT32(argno);
	if (v < lo)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be at least %d", what, lo)));
	return v;
}

/*
 * The max_messages argument of receive and peek: not NULL, from 1 to
 * deliver.max_batch_size.
 */
int32
arg_max_messages(FunctionCallInfo fcinfo, int argno)
{
	int32		v;

	arg_not_null(fcinfo, argno, "max_messages");
	v = PG_GETARG_INT32(argno);
	if (v < 1 || v > deliver_max_batch)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_messages must be between 1 and %d", deliver_max_batch),
				 errhint("The upper limit is the setting deliver.max_batch_size.")));
	return v;
}

/*
 * An interval argument in milliseconds, checked against [lo, hi]; dflt when
 * it is NULL.  Months count as 30 days.  Huge values are rejected, never
 * wrapped around.
 */
int64
arg_interval_ms(FunctionCallInfo fcinfo, int argno, int64 dflt, int64 lo, int64 hi,
				const char *what, const char *range)
{
	Interval   *iv;
	double		ms;

	if (PG_ARGISNULL(argno))
		return dflt;
	iv = PG_GETARG_INTERVAL_P(argno);
	ms = (double) iv->time / 1000.0 + (double) iv->day * 86400000.0 +
		(double) iv->month * 30.0 * 86400000.0;
	if (ms < (double) lo || ms > (double) hi)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be between %s", what, range)));
	return (int64) ms;
}

/*
 * s cut to at most maxbytes bytes on a character boundary (for messages
 * that quote user input): s itself when it is short enough.
 */
const char *
clip_text(const char *s, int maxbytes)
{
	int			len = strlen(s);

	if (len <= maxbytes)
		return s;
	return pnstrdup(s, pg_mbcliplen(s, len, maxbytes));
}

/*
 * Copy src into dst (dstsize bytes), cut on a character boundary so that
 * what is stored stays valid in the database encoding.
 */
void
clip_copy(char *dst, const char *src, int dstsize)
{
	int			len = strlen(src);

	if (len >= dstsize)
		len = pg_mbcliplen(src, len, dstsize - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}
