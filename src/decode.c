/*
 * decode.c
 *		The "deliver" logical decoding output plugin: push delivery.
 *
 * A replication slot created with plugin "deliver" streams the messages
 * committed to deliver's queues, in commit order, and nothing else: of all
 * the changes in the WAL it keeps the inserts into the segment tables
 * deliver.q<id>_s<n>.
 * A message enters a segment once, when it is sent (or, for a delayed
 * message, when it comes due and is moved there), so each message is
 * emitted once, at the commit of the transaction that made it available.
 *
 * The queue name of a segment is read from deliver.queue through the
 * decoding's historic catalog snapshot; deliver.queue and
 * deliver.consumer_group are user catalog tables (user_catalog_table = true)
 * for that reason.  Names are cached per decoding context (queue and group
 * ids are never reused).
 *
 * Options (all optional):
 *   queues          comma-separated queue names (default: every queue)
 *   consumer_group  a message stored for one consumer group only (a
 *                   redrive, a delayed message that came due after a newer
 *                   group was created) is emitted when it is this group's;
 *                   without the option each such message is emitted once
 *   format          json (default: one JSON object per message) or binary
 *   include_commit  true: after each transaction that emitted messages, a
 *                   commit record (JSON: {"commit_lsn":..,"messages":n})
 *   pack            true (binary format only): the records of a
 *                   transaction are sent several to a message (XLogData),
 *                   whole, up to PACK_BYTES, never two transactions in one:
 *                   one write to the client per transaction of ordinary
 *                   size instead of one per message
 *
 * The binary layout is documented in docs/push.md; cli/record.h reads it.
 *
 * Close to 650 lines, kept whole: the callbacks, the options and both
 * output formats share one per-slot state (DecodeData) and its name
 * caches, and a format's layout is easier to check next to the code that
 * writes it (bin_message, dec_commit).
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "libpq/pqformat.h"
#include "replication/logical.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "args.h"
#include "tables.h"


typedef struct DecodeQueue
{
	int32		queue_id;		/* hash key */
	bool		wanted;
	char		name[NAMEDATALEN];
} DecodeQueue;

typedef struct DecodeGroup
{
	int32		group_id;		/* hash key */
	bool		matches;		/* named like the consumer_group option */
} DecodeGroup;

/*
 * With pack, the records gathered before they are written: a write goes to
 * the client when they reach this size (records are never split), and at
 * the end of each transaction.
 */
#define PACK_BYTES	(64 * 1024)

typedef struct DecodeData
{
	MemoryContext context;		/* reset after each message */
	List	   *queues;			/* names (char *); NIL: every queue */
	char	   *group;			/* consumer_group option, or NULL */
	bool		binary;
	bool		include_commit;
	bool		pack;
	StringInfoData packed;		/* pack: the records not written yet */
	Oid			nsp;			/* schema deliver, once known */
	HTAB	   *queue_cache;
	HTAB	   *group_cache;
	/* the transaction being decoded */
	int64		emitted;
	int64		last_targeted_id;	/* dedup of per-group copies */
} DecodeData;

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);
static void dec_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init);
static void dec_shutdown(LogicalDecodingContext *ctx);
static void dec_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void dec_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn);
static void dec_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   Relation relation, ReorderBufferChange *change);

/*
 * The output plugin's callbacks (logical decoding looks this up by name).
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = dec_startup;
	cb->begin_cb = dec_begin;
	cb->change_cb = dec_change;
	cb->commit_cb = dec_commit;
	cb->shutdown_cb = dec_shutdown;
	/* truncate, message and streaming callbacks: not needed */
}

/* a boolean option (no value means true) */
static bool
option_bool(DefElem *elem)
{
	bool		v;

	if (elem->arg == NULL)
		return true;
	if (!parse_bool(strVal(elem->arg), &v))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver: option \"%s\" needs a boolean value, not \"%s\"",
						elem->defname, strVal(elem->arg))));
	return v;
}

/* an option that needs a value */
static char *
option_string(DefElem *elem)
{
	if (elem->arg == NULL || strVal(elem->arg)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver: option \"%s\" needs a value", elem->defname)));
	return strVal(elem->arg);
}

/*
 * A decoding session starts: parse its options, set up the name caches.
 */
static void
dec_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	DecodeData *data = palloc0(sizeof(DecodeData));
	ListCell   *lc;
	HASHCTL		ctl;

	data->context = AllocSetContextCreate(ctx->context, "deliver decoding",
										  ALLOCSET_DEFAULT_SIZES);
	foreach(lc, ctx->output_plugin_options)
	{
		DefElem    *elem = lfirst(lc);

		Assert(elem->arg == NULL || IsA(elem->arg, String));
		if (strcmp(elem->defname, "queues") == 0)
		{
			char	   *s = pstrdup(option_string(elem));
			char	   *tok;
			char	   *save = NULL;

			for (tok = strtok_r(s, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			{
				while (*tok == ' ')
					tok++;
				for (char *e = tok + strlen(tok); e > tok && e[-1] == ' ';)
					*--e = '\0';
				if (*tok == '\0')
					continue;
				if (strlen(tok) >= NAMEDATALEN)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("deliver: queue name \"%s\" is too long",
									clip_text(tok, ERROR_QUOTE_BYTES))));
				data->queues = lappend(data->queues, tok);
			}
			if (data->queues == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("deliver: option \"queues\" names no queue")));
		}
		else if (strcmp(elem->defname, "consumer_group") == 0)
			data->group = pstrdup(option_string(elem));
		else if (strcmp(elem->defname, "format") == 0)
		{
			char	   *f = option_string(elem);

			if (strcmp(f, "json") == 0)
				data->binary = false;
			else if (strcmp(f, "binary") == 0)
				data->binary = true;
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("deliver: unknown format \"%s\"", f),
						 errhint("Use format json or binary.")));
		}
		else if (strcmp(elem->defname, "include_commit") == 0)
			data->include_commit = option_bool(elem);
		else if (strcmp(elem->defname, "pack") == 0)
			data->pack = option_bool(elem);
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("deliver: option \"%s\" = \"%s\" is unknown",
							elem->defname, elem->arg ? strVal(elem->arg) : "(null)"),
					 errhint("The options are queues, consumer_group, format, include_commit and pack.")));
	}
	if (data->pack && !data->binary)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("deliver: option \"pack\" needs format binary"),
				 errhint("JSON objects are one to a message; add \"format\" 'binary'.")));
	if (data->pack)
	{
		MemoryContext old = MemoryContextSwitchTo(ctx->context);

		initStringInfo(&data->packed);
		MemoryContextSwitchTo(old);
	}
	opt->output_type = data->binary ? OUTPUT_PLUGIN_BINARY_OUTPUT
		: OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(int32);
	ctl.entrysize = sizeof(DecodeQueue);
	ctl.hcxt = ctx->context;
	data->queue_cache = hash_create("deliver decoding queues", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	ctl.entrysize = sizeof(DecodeGroup);
	data->group_cache = hash_create("deliver decoding groups", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	data->nsp = InvalidOid;
	ctx->output_plugin_private = data;
}

/* the session ends: free its memory */
static void
dec_shutdown(LogicalDecodingContext *ctx)
{
	DecodeData *data = ctx->output_plugin_private;

	MemoryContextDelete(data->context);
}

/* a transaction begins */
static void
dec_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	DecodeData *data = ctx->output_plugin_private;

	/* output starts lazily: transactions without messages emit nothing */
	data->emitted = 0;
	data->last_targeted_id = -1;
	if (data->pack)
		resetStringInfo(&data->packed);
}

/*
 * pack: write the records gathered (and anything the caller appends after
 * them before OutputPluginWrite) as one message.
 */
static void
pack_write_begin(LogicalDecodingContext *ctx, DecodeData *data)
{
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, data->packed.data, data->packed.len);
	if (data->packed.maxlen > 4 * PACK_BYTES)
	{
		/* a large record was gathered: do not keep its room */
		MemoryContext old = MemoryContextSwitchTo(GetMemoryChunkContext(data->packed.data));

		pfree(data->packed.data);
		initStringInfo(&data->packed);
		MemoryContextSwitchTo(old);
	}
	else
		resetStringInfo(&data->packed);
}

/* microseconds since the Unix epoch (the binary format's times) */
static int64
unix_usec(TimestampTz t)
{
	return t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * USECS_PER_SEC;
}

/*
 * A transaction commits: with include_commit, a commit record after its
 * messages.
 */
static void
dec_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr commit_lsn)
{
	DecodeData *data = ctx->output_plugin_private;

	if (data->emitted == 0)
		return;

	/*
	 * A client's confirmation of this transaction changes only the
	 * replication slot's confirmed_flush, which PostgreSQL 15 does not mark
	 * for saving: a clean restart would then resume from the position saved
	 * long before (every message since then again).  Marking the replication
	 * slot dirty here makes the next checkpoint, including the shutdown
	 * checkpoint, save the position the client has confirmed by then.
	 */
	if (MyReplicationSlot != NULL && ctx->fast_forward == false)
		ReplicationSlotMarkDirty();

	if (!data->include_commit)
	{
		if (data->pack && data->packed.len > 0)
		{
			pack_write_begin(ctx, data);
			OutputPluginWrite(ctx, true);
		}
		return;
	}
	if (data->pack)
		pack_write_begin(ctx, data);
	else
		OutputPluginPrepareWrite(ctx, true);
	if (data->binary)
	{
		pq_sendbyte(ctx->out, 'C');
		pq_sendint64(ctx->out, txn->end_lsn);
		pq_sendint64(ctx->out, unix_usec(txn->xact_time.commit_time));
		pq_sendint32(ctx->out, (uint32) data->emitted);
	}
	else
	{
		char		lsn[32];

		snprintf(lsn, sizeof(lsn), "%X/%X", LSN_FORMAT_ARGS(txn->end_lsn));
		appendStringInfo(ctx->out, "{\"commit_lsn\":\"%s\",\"commit_time\":\"%s\",\"messages\":" INT64_FORMAT "}",
						 lsn,
						 JsonEncodeDateTime(NULL, TimestampTzGetDatum(txn->xact_time.commit_time),
											TIMESTAMPTZOID, NULL),
						 data->emitted);
	}
	OutputPluginWrite(ctx, true);
}

/*
 * A row of deliver.queue or deliver.consumer_group, read through the
 * historic snapshot: the text in column name_att of the row whose int4
 * column id_att equals id (and in *queue_id its column queue_att, when
 * valid), or false.
 */
static bool
catalog_name(Oid nsp, const char *table, AttrNumber id_att, int32 id, AttrNumber name_att,
			 AttrNumber queue_att, int32 *queue_id, char *out)
{
	Oid			relid = get_relname_relid(table, nsp);
	Relation	rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple	tup;
	bool		found = false;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	if (!RelationIsUsedAsCatalogTable(rel))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deliver: table deliver.%s is not a user catalog table", table),
				 errhint("Recreate the extension deliver.")));
	ScanKeyInit(&key, id_att, BTEqualStrategyNumber, F_INT4EQ, Int32GetDatum(id));
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	if (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		d = heap_getattr(tup, name_att, RelationGetDescr(rel), &isnull);

		if (!isnull)
		{
			text_to_cstring_buffer(DatumGetTextPP(d), out, NAMEDATALEN);
			found = true;
			if (queue_att != InvalidAttrNumber)
				*queue_id = DatumGetInt32(heap_getattr(tup, queue_att,
													   RelationGetDescr(rel), &isnull));
		}
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/* empty a name cache */
static void
cache_clear(HTAB *h)
{
	HASH_SEQ_STATUS st;
	void	   *e;

	hash_seq_init(&st, h);
	while ((e = hash_seq_search(&st)) != NULL)
		hash_search(h, e, HASH_REMOVE, NULL);
}

/*
 * The queue a relation is a segment of, when the plugin emits its rows;
 * NULL otherwise.
 */
static DecodeQueue *
segment_queue(DecodeData *data, Relation relation)
{
	const char *relname = RelationGetRelationName(relation);
	int32		qid;
	int			seg;
	DecodeQueue *dq;
	bool		found;

	/* q<id>_s<n>, nothing more */
	if (!queue_relname_is_segment(relname, &qid, &seg))
		return NULL;
	if (relation->rd_rel->relnamespace != data->nsp)
	{
		char	   *nspname = get_namespace_name(relation->rd_rel->relnamespace);

		if (nspname == NULL || strcmp(nspname, DELIVER_SCHEMA) != 0)
			return NULL;
		/* first use, or the extension was recreated: forget the cache */
		cache_clear(data->queue_cache);
		cache_clear(data->group_cache);
		data->nsp = relation->rd_rel->relnamespace;
	}

	dq = hash_search(data->queue_cache, &qid, HASH_ENTER, &found);
	if (!found)
	{
		int32		unused;

		dq->wanted = false;
		dq->name[0] = '\0';
		if (catalog_name(data->nsp, "queue", QUEUE_COL_QUEUE_ID, qid, QUEUE_COL_QUEUE_NAME,
						 InvalidAttrNumber, &unused, dq->name))
		{
			ListCell   *lc;

			if (data->queues == NIL)
				dq->wanted = true;
			foreach(lc, data->queues)
			{
				if (strcmp((char *) lfirst(lc), dq->name) == 0)
					dq->wanted = true;
			}
		}
	}
	return dq->wanted ? dq : NULL;
}

/*
 * Is the consumer group (of queue_id) the one the consumer_group option
 * names?  Cached per group id.
 */
static bool
group_matches(DecodeData *data, int32 queue_id, int32 group_id)
{
	DecodeGroup *dg;
	bool		found;

	dg = hash_search(data->group_cache, &group_id, HASH_ENTER, &found);
	if (!found)
	{
		char		name[NAMEDATALEN];
		int32		gq = 0;

		dg->matches = catalog_name(data->nsp, "consumer_group", GROUP_COL_GROUP_ID, group_id,
								   GROUP_COL_GROUP_NAME, GROUP_COL_QUEUE_ID, &gq, name) &&
			gq == queue_id && strcmp(name, data->group) == 0;
	}
	return dg->matches;
}

/* a text value as JSON, or null */
static void
json_text_or_null(StringInfo out, Datum d, bool isnull)
{
	if (isnull)
		appendStringInfoString(out, "null");
	else
		escape_json(out, TextDatumGetCString(d));
}

/* a jsonb value as JSON, or null */
static void
json_jsonb_or_null(StringInfo out, Datum d, bool isnull)
{
	if (isnull)
		appendStringInfoString(out, "null");
	else
	{
		Jsonb	   *jb = DatumGetJsonbP(d);

		(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
	}
}

/*
 * A string of a binary record: its length (uint16, or uint32 when wide;
 * all ones for NULL), then its bytes.  A string longer than its length
 * field carries is cut (on a character boundary) with a warning: deliver's
 * functions never store one (ordering keys are at most
 * DELIVER_MAX_KEY_BYTES), but the rows are not trusted.
 */
static void
bin_text(StringInfo out, const char *s, bool isnull, bool wide, int64 message_id)
{
	size_t		len = isnull ? 0 : strlen(s);
	size_t		max = wide ? (size_t) 0xFFFFFFFE : (size_t) 0xFFFE;

	if (len > max)
	{
		ereport(WARNING,
				(errmsg("deliver: a text of message " INT64_FORMAT " is %zu bytes long, more than the binary format carries; it is cut to %zu bytes",
						message_id, len, max)));
		len = pg_mbcliplen(s, len, max);
	}
	if (wide)
		pq_sendint32(out, isnull ? 0xFFFFFFFF : (uint32) len);
	else
		pq_sendint16(out, isnull ? 0xFFFF : (uint16) len);
	if (!isnull)
		appendBinaryStringInfo(out, s, len);
}

/* a jsonb value as text */
static char *
jsonb_cstring(Datum d)
{
	Jsonb	   *jb = DatumGetJsonbP(d);

	return JsonbToCString(NULL, &jb->root, VARSIZE(jb));
}

/*
 * A message record of the binary format (layout in docs/push.md).
 */
static void
bin_message(StringInfo out, ReorderBufferTXN *txn, DecodeQueue *dq, int64 message_id,
			Datum *values, bool *nulls)
{
	pq_sendbyte(out, 'M');
	pq_sendint64(out, txn->end_lsn);
	pq_sendint64(out, unix_usec(txn->xact_time.commit_time));
	pq_sendint64(out, message_id);
	pq_sendint64(out, unix_usec(DatumGetTimestampTz(values[SEG_COL_ENQUEUED_AT])));
	bin_text(out, dq->name, false, false, message_id);
	bin_text(out, nulls[SEG_COL_ORDERING_KEY] ? NULL :
			 TextDatumGetCString(values[SEG_COL_ORDERING_KEY]),
			 nulls[SEG_COL_ORDERING_KEY], false, message_id);
	bin_text(out, nulls[SEG_COL_HEADERS] ? NULL : jsonb_cstring(values[SEG_COL_HEADERS]),
			 nulls[SEG_COL_HEADERS], true, message_id);
	bin_text(out, nulls[SEG_COL_PAYLOAD] ? NULL : jsonb_cstring(values[SEG_COL_PAYLOAD]),
			 nulls[SEG_COL_PAYLOAD], true, message_id);
}

/*
 * Does the relation have the columns of a segment, with their types?  (Its
 * rows are read by position.)
 */
static bool
segment_layout_ok(TupleDesc desc)
{
	static const Oid types[SEG_NCOLUMNS] = {XID8OID, INT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID,
	JSONBOID, JSONBOID, TIMESTAMPTZOID, INT2OID};
	int			i;

	if (desc->natts != SEG_NCOLUMNS && desc->natts != SEG_NCOLUMNS_V01)
		return false;
	for (i = 0; i < desc->natts; i++)
		if (TupleDescAttr(desc, i)->attisdropped || TupleDescAttr(desc, i)->atttypid != types[i])
			return false;
	return true;
}

/*
 * A change: an insert into a segment table of a wanted queue is a message;
 * emit it (JSON or binary), everything else is skipped.
 */
static void
dec_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   Relation relation, ReorderBufferChange *change)
{
	DecodeData *data = ctx->output_plugin_private;
	DecodeQueue *dq;
	TupleDesc	desc = RelationGetDescr(relation);
	HeapTuple	tuple;
	Datum		values[SEG_NCOLUMNS + 1];	/* by attribute number */
	bool		nulls[SEG_NCOLUMNS + 1];
	MemoryContext old;
	int64		message_id;

	if (change->action != REORDER_BUFFER_CHANGE_INSERT ||
		change->data.tp.newtuple == NULL)
		return;
	if (relation->rd_rel->relkind != RELKIND_RELATION)
		return;
	dq = segment_queue(data, relation);
	if (dq == NULL)
		return;
	if (!segment_layout_ok(desc))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("deliver: segment table \"%s\" does not have the columns of a segment",
						RelationGetRelationName(relation))));

	old = MemoryContextSwitchTo(data->context);
	tuple = &change->data.tp.newtuple->tuple;
	heap_deform_tuple(tuple, desc, values + 1, nulls + 1);
	message_id = DatumGetInt64(values[SEG_COL_MESSAGE_ID]);

	if (!nulls[SEG_COL_TARGET_GROUP])
	{
		/* a copy stored for one group */
		if (data->group != NULL)
		{
			if (!group_matches(data, dq->queue_id, DatumGetInt32(values[SEG_COL_TARGET_GROUP])))
				goto done;
		}
		else if (message_id == data->last_targeted_id)
			goto done;
		data->last_targeted_id = message_id;
	}

	if (data->pack)
	{
		/* gathered; written at the transaction's end, or when PACK_BYTES */
		StringInfo	out = &data->packed;

		bin_message(out, txn, dq, message_id, values, nulls);
		data->emitted++;
		if (out->len >= PACK_BYTES)
		{
			pack_write_begin(ctx, data);
			OutputPluginWrite(ctx, true);
		}
		goto done;
	}
	OutputPluginPrepareWrite(ctx, true);
	if (data->binary)
		bin_message(ctx->out, txn, dq, message_id, values, nulls);
	else
	{
		StringInfo	out = ctx->out;

		appendStringInfoString(out, "{\"queue\":");
		escape_json(out, dq->name);
		appendStringInfo(out, ",\"message_id\":" INT64_FORMAT ",\"payload\":", message_id);
		json_jsonb_or_null(out, values[SEG_COL_PAYLOAD], nulls[SEG_COL_PAYLOAD]);
		appendStringInfoString(out, ",\"headers\":");
		json_jsonb_or_null(out, values[SEG_COL_HEADERS], nulls[SEG_COL_HEADERS]);
		appendStringInfoString(out, ",\"ordering_key\":");
		json_text_or_null(out, values[SEG_COL_ORDERING_KEY], nulls[SEG_COL_ORDERING_KEY]);
		appendStringInfo(out, ",\"enqueued_at\":\"%s\"",
						 JsonEncodeDateTime(NULL, values[SEG_COL_ENQUEUED_AT], TIMESTAMPTZOID, NULL));
		appendStringInfo(out, ",\"commit_lsn\":\"%X/%X\",\"commit_time\":\"%s\"}",
						 LSN_FORMAT_ARGS(txn->end_lsn),
						 JsonEncodeDateTime(NULL, TimestampTzGetDatum(txn->xact_time.commit_time),
											TIMESTAMPTZOID, NULL));
	}
	OutputPluginWrite(ctx, true);
	data->emitted++;

done:
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
}
