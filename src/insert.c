/*
 * insert.c
 *		Appending message rows to a segment without the executor.
 *
 * A send writes its rows into the queue's active segment with one
 * table_multi_insert (a WAL record per heap page rather than per row) and
 * inserts their entries into the segment's index itself: no plan to
 * prepare per queue and segment, no executor to start per call.
 *
 * That is right only while the segment is as create_queue made it (see
 * segment_plain): its eight columns, a NOT NULL only where every row has a
 * value, one plain index on (txid, message_id), and no trigger, rule, row
 * security, CHECK constraint or other index, which an INSERT would have to
 * honour.  Otherwise segment_insert returns false and the caller runs its
 * SQL INSERT, which honours whatever was added to the table.
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

/* the columns of a segment, in order (sql/admin.sql, create_queue) */
static const struct
{
	Oid			type;
	bool		always;			/* every row has a value */
}			seg_cols[SEG_NCOLUMNS] =
{
	{XID8OID, true},			/* txid */
	{INT8OID, true},			/* message_id */
	{INT4OID, false},			/* target_group */
	{TIMESTAMPTZOID, true},		/* enqueued_at */
	{TEXTOID, false},			/* ordering_key */
	{JSONBOID, false},			/* headers */
	{JSONBOID, true},			/* payload */
	{TIMESTAMPTZOID, false},	/* expires_at */
};

/*
 * Is the segment rel as create_queue made it?  Returns its one index's OID,
 * or InvalidOid when an INSERT would have more to do than this module does.
 */
static Oid
segment_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *indexes;
	Oid			index = InvalidOid;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->trigdesc != NULL || rel->rd_rules != NULL ||
		rel->rd_rel->relrowsecurity || desc->natts != SEG_NCOLUMNS)
		return InvalidOid;
	if (desc->constr && (desc->constr->num_check > 0 || desc->constr->has_generated_stored))
		return InvalidOid;
	for (i = 0; i < SEG_NCOLUMNS; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != seg_cols[i].type || att->attgenerated ||
			(att->attnotnull && !seg_cols[i].always))
			return InvalidOid;
	}
	indexes = RelationGetIndexList(rel);
	if (list_length(indexes) == 1)
		index = linitial_oid(indexes);
	list_free(indexes);
	return index;
}

/* Is the index a plain, valid, non-unique one on (txid, message_id)? */
static bool
index_plain(Relation irel)
{
	Form_pg_index ix = irel->rd_index;

	return ix->indnatts == 2 && ix->indnkeyatts == 2 && ix->indkey.values[0] == SEG_COL_TXID &&
		ix->indkey.values[1] == SEG_COL_MESSAGE_ID && !ix->indisunique && !ix->indisexclusion &&
		ix->indisvalid && ix->indisready && ix->indislive &&
		heap_attisnull(irel->rd_indextuple, Anum_pg_index_indexprs, NULL) &&
		heap_attisnull(irel->rd_indextuple, Anum_pg_index_indpred, NULL);
}

/*
 * Append n rows to the segment relid (locked RowExclusiveLock by the
 * caller): rows[k] holds row k's SEG_NCOLUMNS values, nulls[k] their null
 * flags.  False, with nothing written, when the segment is not plain.
 */
bool
segment_insert(Oid relid, int n, Datum (*rows)[SEG_NCOLUMNS], bool (*nulls)[SEG_NCOLUMNS])
{
	Relation	rel = table_open(relid, RowExclusiveLock);
	Oid			index = segment_plain(rel);
	Relation	irel;
	IndexInfo  *ii;
	TupleTableSlot **slots;
	CommandId	cid;
	int			k;

	if (!OidIsValid(index))
	{
		table_close(rel, NoLock);
		return false;
	}
	irel = index_open(index, RowExclusiveLock);
	if (!index_plain(irel))
	{
		index_close(irel, NoLock);
		table_close(rel, NoLock);
		return false;
	}
	ii = BuildIndexInfo(irel);

	slots = palloc(sizeof(TupleTableSlot *) * n);
	for (k = 0; k < n; k++)
	{
		slots[k] = table_slot_create(rel, NULL);
		memcpy(slots[k]->tts_values, rows[k], sizeof(Datum) * SEG_NCOLUMNS);
		memcpy(slots[k]->tts_isnull, nulls[k], sizeof(bool) * SEG_NCOLUMNS);
		ExecStoreVirtualTuple(slots[k]);
	}
	cid = GetCurrentCommandId(true);
	table_multi_insert(rel, slots, n, cid, 0, NULL);
	for (k = 0; k < n; k++)
	{
		Datum		key[2] = {rows[k][SEG_COL_TXID - 1], rows[k][SEG_COL_MESSAGE_ID - 1]};
		bool		key_nulls[2] = {false, false};

		index_insert(irel, key, key_nulls, &slots[k]->tts_tid, rel, UNIQUE_CHECK_NO, false, ii);
		ExecDropSingleTupleTableSlot(slots[k]);
	}
	pfree(slots);
	index_close(irel, NoLock);
	table_close(rel, NoLock);
	return true;
}
