/*
 * args.h
 *		Checking the arguments of deliver's SQL functions; cutting user
 *		strings on character boundaries.
 */
#ifndef DELIVER_ARGS_H
#define DELIVER_ARGS_H

#include "fmgr.h"

/* most bytes of user input an error message quotes */
#define ERROR_QUOTE_BYTES	80

extern void arg_not_null(FunctionCallInfo fcinfo, int argno, const char *what);
extern int32 arg_int_at_least(FunctionCallInfo fcinfo, int argno, int32 lo, const char *what);
extern int32 arg_max_messages(FunctionCallInfo fcinfo, int argno);
extern int64 arg_interval_ms(FunctionCallInfo fcinfo, int argno, int64 dflt,
							 int64 lo, int64 hi, const char *what, const char *range);
extern const char *clip_text(const char *s, int maxbytes);
extern void clip_copy(char *dst, const char *src, int dstsize);

#endif							/* DELIVER_ARGS_H */
