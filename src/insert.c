/*
 * insert.c
 *		Appending rows to a queue's segments and done tables without the
 *		executor.
 *
 * A send writes its messages into the active segment with one
 * table_multi_insert (a WAL record per heap page rather than per row) and
 * inserts their entries into the segment's index itself; an ack (and any
 * other finish) writes its one row into the done table the same way.  No
 * plan to prepare per queue and segment, no executor to start per call.
 *
 * That is right only while the table is as create_queue made it (see
 * table_plain): its columns and types, a NOT NULL only where every row has
 * a value, the index deliver reads (the segment's, on (txid, message_id);
 * a done table has none), and no trigger, rule, row security, CHECK
 * constraint or other index, which an INSERT would have to honour.
 * Otherwise these functions return false and the caller runs its SQL
 * INSERT, which honours whatever was added to the table.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "insert.h"
#include "tables.h"

/* the columns of a table, in order: type, and whether every row has a value */
typedef struct Column
{
	Oid			type;
	bool		always;
} Column;

/* what a table deliver writes is made of (sql/admin.sql, create_queue) */
typedef struct Shape
{
	int			ncols;
	const Column *cols;
	int			nkeys;			/* 2: an index on columns keys[0], keys[1]; 0: none */
	AttrNumber	keys[2];
} Shape;

static const Column segment_cols[SEG_NCOLUMNS] = {
	{XID8OID, true},			/* txid */
	{INT8OID, true},			/* message_id */
	{INT4OID, false},			/* target_group */
	{TIMESTAMPTZOID, true},		/* enqueued_at */
	{TEXTOID, false},			/* ordering_key */
	{JSONBOID, false},			/* headers */
	{JSONBOID, true},			/* payload */
	{TIMESTAMPTZOID, false},	/* expires_at */
	{INT2OID, false},			/* priority */
};
static const Shape segment_shape = {SEG_NCOLUMNS, segment_cols, 2, {SEG_COL_TXID, SEG_COL_MESSAGE_ID}};

static const Column done_cols[DONE_NCOLUMNS] = {
	{INT4OID, true},			/* group_id */
	{CHAROID, true},			/* kind */
	{INT8ARRAYOID, true},		/* message_ids */
	{PG_SNAPSHOTOID, false},	/* done */
	{TIMESTAMPTZOID, true},		/* written_at */
};
static const Shape done_shape = {DONE_NCOLUMNS, done_cols, 0, {0, 0}};

/*
 * Is rel as create_queue made it (shape s)?  *index gets its one index's
 * OID (InvalidOid for a shape without one).
 */
static bool
table_plain(Relation rel, const Shape *s, Oid *index)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	int			i;
	bool		ok;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL || rel->rd_rules != NULL ||
		rel->rd_rel->relrowsecurity || desc->natts != s->ncols)
		return false;
	if (desc->constr && (desc->constr->num_check > 0 || desc->constr->has_generated_stored))
		return false;
	for (i = 0; i < s->ncols; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != s->cols[i].type || att->attgenerated ||
			(att->attnotnull && !s->cols[i].always))
			return false;
	}
	indexes = RelationGetIndexList(rel);
	ok = list_length(indexes) == (s->nkeys > 0 ? 1 : 0);
	*index = ok && s->nkeys > 0 ? linitial_oid(indexes) : InvalidOid;
	list_free(indexes);
	return ok;
}

/* Is the index a plain, valid, non-unique one on the shape's key columns? */
static bool
index_plain(Relation irel, const Shape *s)
{
	Form_pg_index ix = irel->rd_index;

	return ix->indnatts == 2 && ix->indnkeyatts == 2 && ix->indkey.values[0] == s->keys[0] &&
		ix->indkey.values[1] == s->keys[1] && !ix->indisunique && !ix->indisexclusion &&
		ix->indisvalid && ix->indisready && ix->indislive &&
		heap_attisnull(irel->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
		heap_attisnull(irel->rd_indextuple, Anum_pg_index_indpred, NULL);
}

/*
 * Append n rows to table relid of shape s (locked RowExclusiveLock by the
 * caller): values[k * ncols + i] is row k's column i + 1, nulls alike.
 * False, with nothing written, when the table is not plain.
 */
static bool
insert_plain(Oid relid, const Shape *s, int n, const Datum *values, const bool *nulls)
{
	Relation	rel = try_table_open(relid, RowExclusiveLock);
	Relation	irel = NULL;
	IndexInfo  *ii = NULL;
	TupleTableSlot **slots;
	Oid			index;
	int			k;

	/* (a table dropped meanwhile: the INSERT says so, as it always did) */
	if (rel == NULL)
		return false;
	if (!table_plain(rel, s, &index))
	{
		table_close(rel, NoLock);
		return false;
	}
	if (OidIsValid(index))
	{
		irel = index_open(index, RowExclusiveLock);
		if (!index_plain(irel, s))
		{
			index_close(irel, NoLock);
			table_close(rel, NoLock);
			return false;
		}
		ii = BuildIndexInfo(irel);
	}

	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (k = 0; k < n; k++)
	{
		slots[k] = table_slot_create(rel, NULL);
		memcpy(slots[k]->tts_values, &values[k * s->ncols], sizeof(Datum) * s->ncols);
		memcpy(slots[k]->tts_isnull, &nulls[k * s->ncols], sizeof(bool) * s->ncols);
		ExecStoreVirtualTuple(slots[k]);
	}
	table_multi_insert(rel, slots, n, GetCurrentCommandId(true), 0, NULL);
	for (k = 0; k < n; k++)
	{
		if (irel)
		{
			Datum		key[2] = {values[k * s->ncols + s->keys[0] - 1], values[k * s->ncols + s->keys[1] - 1]};
			bool		key_nulls[2] = {false, false};

			index_insert(irel, key, key_nulls, &slots[k]->tts_tid, rel, UNIQUE_CHECK_NO, false, ii);
		}
		ExecDropSingleTupleTableSlot(slots[k]);
	}
	pfree(slots);
	if (irel)
		index_close(irel, NoLock);
	table_close(rel, NoLock);
	return true;
}

/* n message rows into segment relid (see insert_plain) */
bool
segment_insert(Oid relid, int n, const Datum *values, const bool *nulls)
{
	return insert_plain(relid, &segment_shape, n, values, nulls);
}

/* one finish record into done table relid (see insert_plain) */
bool
done_insert(Oid relid, const Datum *values, const bool *nulls)
{
	return insert_plain(relid, &done_shape, 1, values, nulls);
}
