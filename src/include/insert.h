/*
 * insert.h
 *		Appending message rows to a segment without the executor (insert.c).
 */
#ifndef DELIVER_INSERT_H
#define DELIVER_INSERT_H

#include "tables.h"

extern bool segment_insert(Oid relid, int n, Datum (*rows)[SEG_NCOLUMNS], bool (*nulls)[SEG_NCOLUMNS]);

#endif							/* DELIVER_INSERT_H */
