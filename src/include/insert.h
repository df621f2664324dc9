/*
 * insert.h
 *		Appending rows to a queue's segments and done tables without the
 *		executor (insert.c).
 */
#ifndef DELIVER_INSERT_H
#define DELIVER_INSERT_H

/* values and nulls: SEG_NCOLUMNS per row, n rows (tables.h) */
extern bool segment_insert(Oid relid, int n, const Datum *values, const bool *nulls);
/* values and nulls: DONE_NCOLUMNS (tables.h) */
extern bool done_insert(Oid relid, const Datum *values, const bool *nulls);

#endif							/* DELIVER_INSERT_H */
