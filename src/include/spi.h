/*
 * spi.h
 *		The SQL statements of deliver's C code, run as the queue's owner
 *		with a pinned search_path (spi.c).
 */
#ifndef DELIVER_SPI_H
#define DELIVER_SPI_H

#include "nodes/execnodes.h"
#include "utils/array.h"

/* room for the key of a prepared statement: its name, queue and segment */
#define STATEMENT_KEY_LEN	64

/* the user and search_path a statement of deliver's runs with */
typedef struct OwnerScope
{
	Oid			save_user;
	int			save_sec;
	int			guc_level;
} OwnerScope;

extern void owner_scope_enter(OwnerScope *s, Oid owner);
extern void owner_scope_exit(OwnerScope *s);
extern int	spi_run(Oid owner, const char *key, const char *sql, int nargs, Oid *argtypes,
					Datum *args, const char *nulls, bool read_only, long count);
extern ArrayType *spi_array(Datum *values, bool *nulls, int n, Oid elemtype);
extern void spi_return_query(ReturnSetInfo *rsinfo, Oid owner, const char *key,
							 const char *sql, int nargs, Oid *argtypes, Datum *args,
							 const char *nulls, const char *what);

#endif							/* DELIVER_SPI_H */
