/*
 * main.h - what every command of the deliver client shares (main.c): exit
 * codes, messages, the checks of arguments, the connection.
 */
#ifndef DELIVER_CLI_MAIN_H
#define DELIVER_CLI_MAIN_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

/* exit codes */
#define EXIT_USAGE		2		/* bad arguments */
#define EXIT_FATAL		3		/* a permanent error: missing slot, privilege */

/* the longest name Postgres keeps (NAMEDATALEN - 1): queues, groups, slots */
#define PG_NAME_MAX		63
/* the longest delivery id: 9223372036854775807 has 19 digits */
#define ID_MAX_DIGITS	20

/* "deliver: " and the message on stderr, then exit with code */
extern void die(int code, const char *fmt,...) __attribute__((format(printf, 2, 3), noreturn));
/* "deliver: " and the message on stderr */
extern void note(const char *fmt,...) __attribute__((format(printf, 1, 2)));
/* a buffer operation that can only fail for want of memory: exit if it did */
extern void must(bool ok);
/* strdup or exit */
extern char *xstrdup(const char *s);

/*
 * An argument as messages show it: quoted, control characters escaped, cut
 * after SHOW_MAX bytes (on a UTF-8 character boundary) with its length.
 */
#define SHOW_MAX 40
typedef struct Shown
{
	char		s[SHOW_MAX * 4 + 48];
} Shown;
extern const char *show(Shown *sh, const char *arg);

/* The checks of arguments: each exits with EXIT_USAGE and says why. */
extern bool parse_id(const char *s, int64_t *out);
extern long long int_arg(const char *cmd, const char *opt, const char *s, long long min,
						 long long max);
extern double seconds_arg(const char *cmd, const char *opt, const char *s, bool zero_ok,
						  double max, const char *range);
extern void name_arg(const char *cmd, const char *what, const char *s);
extern void no_more_args(const char *cmd, int argc, char **argv, int next);

/* microseconds since 1970-01-01 */
extern int64_t now_usec(void);

/* A connection as -d and the libpq environment say (replication: for streaming). */
extern PGconn *connect_sql(bool replication);
/* Run sql with its parameters as text; its result, or exit with the error. */
extern PGresult *exec_or_die(PGconn *conn, const char *sql, int n, const char *const *params);

#endif
