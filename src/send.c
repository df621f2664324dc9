/*
 * send.c
 *		deliver.send, deliver.send_batch: append messages to a queue.
 *
 * A message is written once, to the queue's current segment (or, when
 * delayed, to the delayed table until it is due), stamped with the sender's
 * top-level transaction id.  Idempotency keys are checked and stored in one
 * statement per call (dedup.c).
 */
#include "postgres.h"

#include "miscadmin.h"

#include "access/detoast.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "args.h"
#include "catalog.h"
#include "dedup.h"
#include "deliver.h"
#include "insert.h"
#include "metrics.h"
#include "overflow.h"
#include "segment.h"
#include "send.h"
#include "settings.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_send);
PG_FUNCTION_INFO_V1(deliver_send_batch);
PG_FUNCTION_INFO_V1(deliver_redrive);
PG_FUNCTION_INFO_V1(deliver_requeue);

typedef struct SendBatch
{
	int			n;
	Datum	   *payloads;
	bool	   *payload_nulls;
	Datum	   *headers;		/* may be NULL */
	bool	   *header_nulls;
	Datum	   *keys;			/* ordering keys, may be NULL */
	bool	   *key_nulls;
	Datum	   *idem;			/* idempotency keys, may be NULL */
	bool	   *idem_nulls;
	int64		delay_ms;
	int32		target_group;	/* 0: every group */
	bool		keyless;		/* no idempotency key needed (redrive) */
	TimestampTz enqueued_at;	/* 0: now */
	bool		has_expires_at; /* false (as zeroed): no expires_at */
	TimestampTz expires_at;		/* the sender's, when has_expires_at */
	int			priority;		/* 0 (as zeroed) to DELIVER_MAX_PRIORITY */
	Datum	   *enqueued_ats;	/* or one per message (redrive), may be NULL */
} SendBatch;

/*
 * A text's length in bytes: its own, also when it comes compressed or out
 * of line (a key read from a table), where VARSIZE_ANY_EXHDR would measure
 * the compressed form or the toast pointer.
 */
static Size
text_len(Datum d)
{
	return toast_raw_datum_size(d) - VARHDRSZ;
}

/*
 * Reject a key (ordering or idempotency) longer than DELIVER_MAX_KEY_BYTES.
 */
static void
check_text_len(Datum d, const char *what, int i, int n)
{
	if (text_len(d) > DELIVER_MAX_KEY_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s is longer than %d bytes", what, DELIVER_MAX_KEY_BYTES),
				 n > 1 ? errdetail("At message %d of the batch.", i + 1) : 0));
}

/*
 * Reject bad messages before anything is written.
 */
static void
validate_batch(QueueInfo *q, SendBatch *b)
{
	int			i;

	if (b->priority > 0 && !q->priorities)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("queue \"%s\" has no priorities", q->name),
				 errdetail("Its receives hand out messages in commit order."),
				 errhint("Send without a priority (or priority 0), or turn priorities on with deliver.alter_queue(queue_name, priorities => true).")));
	for (i = 0; i < b->n; i++)
	{
		Size		size;

		if (b->payload_nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("payload must not be NULL"),
					 b->n > 1 ? errdetail("At message %d of the batch.", i + 1) : 0));
		size = toast_raw_datum_size(b->payloads[i]);
		if (b->headers && !b->header_nulls[i])
		{
			Jsonb	   *h = DatumGetJsonbP(b->headers[i]);

			if (!JB_ROOT_IS_OBJECT(h) || JB_ROOT_IS_SCALAR(h))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("headers must be a JSON object"),
						 b->n > 1 ? errdetail("At message %d of the batch.", i + 1) : 0));
			size += toast_raw_datum_size(b->headers[i]);
		}
		if (size > (Size) deliver_max_payload)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("message is too large: %zu bytes, the limit is %d", size, deliver_max_payload),
					 errhint("The limit is the setting deliver.max_payload_size."),
					 b->n > 1 ? errdetail("At message %d of the batch.", i + 1) : 0));
		if (b->keys && !b->key_nulls[i])
			check_text_len(b->keys[i], "ordering_key", i, b->n);
		if (b->idem && !b->idem_nulls[i])
		{
			check_text_len(b->idem[i], "idempotency_key", i, b->n);
			if (text_len(b->idem[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("idempotency_key must not be empty")));
		}
		else if (q->guarantee == G_EXACTLY_ONCE && !b->keyless)
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("queue \"%s\" is exactly_once: every message needs an idempotency_key", q->name),
					 b->n > 1 ? errdetail("At message %d of the batch.", i + 1) : 0));
	}
}

/* most messages one round of drop_oldest moves for a group */
#define OVERFLOW_DROP_ROUND	10000

/*
 * overflow drop_oldest: make room for n messages in each group by moving
 * its oldest messages to the dead letters (in this transaction).  False
 * when a group cannot be brought down far enough (what is left is in
 * flight or FIFO-held): then the send is rejected (and the moves undone
 * with it).
 */
static bool
make_room(QueueInfo *q, int n)
{
	int			i;

	for (i = 0; i < q->ngroups; i++)
	{
		int32		gid = q->groups[i].group_id;

		if (group_depth_fits(q, gid, n, q->max_depth))
			continue;			/* far from the limit: no count */
		for (;;)
		{
			int64		d = group_depth(q, gid, q->max_depth + 1);
			int64		need = d + n - q->max_depth;

			if (need <= 0)
				break;
			if (overflow_drop_oldest(q, gid, (int) Min(need, OVERFLOW_DROP_ROUND)) == 0)
				return false;
		}
	}
	return true;
}

/*
 * A queue with a max_depth: reject a call that would take the depth (of
 * the group furthest behind, committed messages only) over it, or with
 * overflow drop_oldest make room first.  Every message of the call counts,
 * also one whose idempotency key was seen.
 */
static void
check_depth(QueueInfo *q, int n)
{
	int64		depth = 0;

	if ((int64) n <= q->max_depth && q->overflow_drop && make_room(q, n))
		return;
	if ((int64) n <= q->max_depth)
	{
		int			i;

		/*
		 * Each group's estimate first (an upper bound of its depth, no
		 * count); the groups it cannot clear are counted, up to one over
		 * the limit: exact when not over it.
		 */
		for (i = 0; i < q->ngroups && depth <= q->max_depth; i++)
		{
			int32		gid = q->groups[i].group_id;
			int64		d;

			if (group_depth_fits(q, gid, n, q->max_depth))
				continue;
			d = group_depth(q, gid, q->max_depth + 1);
			if (d > depth)
				depth = d;
		}
		if (depth + n <= q->max_depth)
			return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("queue \"%s\" is full: max_depth is " INT64_FORMAT, q->name, q->max_depth),
			 n > (int64) q->max_depth ? errdetail("The call sends %d messages.", n)
			 : depth > q->max_depth ? errdetail("Its depth is over the limit already.")
			 : errdetail("Its depth is " INT64_FORMAT " and the call sends %d messages.", depth, n),
			 errhint("Receive and ack messages, or raise max_depth with deliver.alter_queue.")));
}

/*
 * The m messages to send (ids, ordering keys, headers, payloads) as rows of
 * the segment relid, written without the executor (insert.c); false, with
 * nothing written, when the segment needs an INSERT (see segment_insert).
 */
static bool
insert_rows(Oid relid, SendBatch *b, int m, FullTransactionId txid, TimestampTz enq,
			Datum *idv, Datum *kv, bool *kn, Datum *hv, bool *hn, Datum *pv)
{
	Datum	   *values = palloc(sizeof(Datum) * SEG_NCOLUMNS * m);
	bool	   *nulls = palloc0(sizeof(bool) * SEG_NCOLUMNS * m);
	int			k;

#define V(col)		values[k * SEG_NCOLUMNS + (col) - 1]
#define ISNULL(col)	nulls[k * SEG_NCOLUMNS + (col) - 1]
	for (k = 0; k < m; k++)
	{
		V(SEG_COL_TXID) = FullTransactionIdGetDatum(txid);
		V(SEG_COL_MESSAGE_ID) = idv[k];
		V(SEG_COL_TARGET_GROUP) = Int32GetDatum(b->target_group);
		ISNULL(SEG_COL_TARGET_GROUP) = b->target_group == 0;
		/* (enqueued_ats: a redrive's, whose messages have no idempotency keys: all fresh) */
		V(SEG_COL_ENQUEUED_AT) = b->enqueued_ats ? b->enqueued_ats[k] : TimestampTzGetDatum(enq);
		V(SEG_COL_ORDERING_KEY) = kv[k];
		ISNULL(SEG_COL_ORDERING_KEY) = kn[k];
		V(SEG_COL_HEADERS) = hv[k];
		ISNULL(SEG_COL_HEADERS) = hn[k];
		V(SEG_COL_PAYLOAD) = pv[k];
		V(SEG_COL_EXPIRES_AT) = TimestampTzGetDatum(b->expires_at);
		ISNULL(SEG_COL_EXPIRES_AT) = !b->has_expires_at;
		V(SEG_COL_PRIORITY) = Int16GetDatum((int16) b->priority);
		ISNULL(SEG_COL_PRIORITY) = b->priority == 0;
	}
#undef V
#undef ISNULL
	return segment_insert(relid, m, values, nulls);
}

/*
 * Write a batch of messages; ids[] gets each message's id.
 */
static void
send_messages(QueueInfo *q, SendBatch *b, int64 *ids)
{
	bool	   *fresh = palloc(sizeof(bool) * b->n);
	Datum	   *idv = palloc(sizeof(Datum) * b->n);
	Datum	   *kv = palloc(sizeof(Datum) * b->n);
	bool	   *kn = palloc(sizeof(bool) * b->n);
	Datum	   *hv = palloc(sizeof(Datum) * b->n);
	bool	   *hn = palloc(sizeof(bool) * b->n);
	Datum	   *pv = palloc(sizeof(Datum) * b->n);
	int			m = 0;
	int			i;
	bool		delayed = b->delay_ms > 0;
	FullTransactionId txid;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz enq = b->enqueued_at ? b->enqueued_at : now;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid		   *types;
	int			nargs;
	Datum		args[10];
	int			rc;
	int			seg;

	queue_check_privilege(q, ACL_INSERT, "send to");
	validate_batch(q, b);
	/*
	 * (before any lock of the send: the depth scan locks as receive does).
	 * Messages sent again with their first time of sending (redrive to
	 * their own queue, replay_archive) are not held back by max_depth.
	 */
	if (unlikely(q->max_depth > 0) && b->enqueued_ats == NULL)
		check_depth(q, b->n);

	/* the xid is taken before the segment is chosen (see rotation) */
	txid = GetTopFullTransactionId();
	seg = queue_current_segment(q);

	/*
	 * The table the messages go to is locked before the id sequence and
	 * the idempotency keys: the order drop_queue and purge_queue follow
	 * (deliver._lock_queue).  A drop_queue this waited for ends the send
	 * here, with 42704.
	 */
	queue_lock_table(q, delayed ? q->delayed_rel : q->seg_rel[seg], RowExclusiveLock);

	for (i = 0; i < b->n; i++)
		ids[i] = nextval_internal(q->seq_rel, false);	/* the right to send was checked */
	if (b->idem)
		dedup_claim_keys(q, b->n, b->idem, b->idem_nulls, ids, fresh);
	else
		memset(fresh, true, sizeof(bool) * b->n);

	for (i = 0; i < b->n; i++)
	{
		if (!fresh[i])
			continue;
		idv[m] = Int64GetDatum(ids[i]);
		kn[m] = b->keys ? b->key_nulls[i] : true;
		kv[m] = kn[m] ? (Datum) 0 : b->keys[i];
		hn[m] = b->headers ? b->header_nulls[i] : true;
		hv[m] = hn[m] ? (Datum) 0 : b->headers[i];
		pv[m] = b->payloads[i];
		m++;
	}
	if (m == 0)
		return;

	if (!delayed && insert_rows(q->seg_rel[seg], b, m, txid, enq, idv, kv, kn, hv, hn, pv))
	{
		xact_note_sent(q->queue_idx, m, 0);
		return;
	}

	if (delayed)
	{
		static Oid	delayed_types[10] = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID,
		TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, XID8OID, TIMESTAMPTZOID, INT2OID};

		types = delayed_types;
		nargs = 10;
		snprintf(key, sizeof(key), "delay:%d", q->queue_id);
		snprintf(sql, sizeof(sql),
				 "INSERT INTO deliver.%s "
				 "(deliver_at, target_group, enqueued_at, message_id, ordering_key, headers, payload, txid, "
				 "expires_at, priority) "
				 "SELECT $1, $2, $3, i, k, h, p, $8, $9, $10 FROM unnest($4, $5, $6, $7) AS u(i, k, h, p)",
				 queue_relname(rel, QUEUE_DELAYED, q->queue_id, 0));
		args[0] = TimestampTzGetDatum(now + b->delay_ms * 1000);
		args[7] = FullTransactionIdGetDatum(txid);
		args[8] = TimestampTzGetDatum(b->expires_at);
	}
	else
	{
		static Oid	send_types[9] = {XID8OID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID,
		TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TIMESTAMPTZOID, INT2OID};

		types = send_types;
		nargs = 9;

		snprintf(key, sizeof(key), "%s:%d:%d", b->enqueued_ats ? "redrive" : "send", q->queue_id, seg);
		if (b->enqueued_ats)
		{
			/* each message keeps its time of first sending: $3 an array */
			static Oid	redrive_types[9] = {XID8OID, INT4OID, TIMESTAMPTZARRAYOID, INT8ARRAYOID,
			TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, TIMESTAMPTZOID, INT2OID};

			types = redrive_types;
			snprintf(sql, sizeof(sql),
					 "INSERT INTO deliver.%s "
					 "(txid, target_group, enqueued_at, message_id, ordering_key, headers, payload, "
					 "expires_at, priority) "
					 "SELECT $1, $2, e, i, k, h, p, $8, $9 FROM unnest($3, $4, $5, $6, $7) AS u(e, i, k, h, p)",
					 queue_relname(rel, QUEUE_SEGMENT, q->queue_id, seg));
		}
		else
			snprintf(sql, sizeof(sql),
					 "INSERT INTO deliver.%s "
					 "(txid, target_group, enqueued_at, message_id, ordering_key, headers, payload, "
					 "expires_at, priority) "
					 "SELECT $1, $2, $3, i, k, h, p, $8, $9 FROM unnest($4, $5, $6, $7) AS u(i, k, h, p)",
					 queue_relname(rel, QUEUE_SEGMENT, q->queue_id, seg));
		args[0] = FullTransactionIdGetDatum(txid);
		args[7] = TimestampTzGetDatum(b->expires_at);
	}
	{
		char		nulls[10] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

		if (b->target_group == 0)
			nulls[1] = 'n';
		if (!b->has_expires_at)
			nulls[nargs - 2] = 'n';
		args[nargs - 1] = Int16GetDatum((int16) b->priority);
		if (b->priority == 0)
			nulls[nargs - 1] = 'n';
		args[1] = Int32GetDatum(b->target_group);
		args[2] = b->enqueued_ats ? PointerGetDatum(spi_array(b->enqueued_ats, NULL, m, TIMESTAMPTZOID))
			: TimestampTzGetDatum(enq);
		args[3] = PointerGetDatum(spi_array(idv, NULL, m, INT8OID));
		args[4] = PointerGetDatum(spi_array(kv, kn, m, TEXTOID));
		args[5] = PointerGetDatum(spi_array(hv, hn, m, JSONBOID));
		args[6] = PointerGetDatum(spi_array(pv, NULL, m, JSONBOID));
		rc = spi_run(q->owner, key, sql, nargs, types, args, nulls, false, 0);
	}
	if (rc != SPI_OK_INSERT || (int) SPI_processed != m)
		elog(ERROR, "deliver: message insert failed: %s", SPI_result_code_string(rc));

	xact_note_sent(q->queue_idx, delayed ? 0 : m,
				   delayed ? now + b->delay_ms * 1000 : 0);
}

/*
 * The optional expires_at argument: DT_NOEND when NULL (or 'infinity').  A
 * time in the past is taken: the message is expired when a receive meets
 * it.  (PG_NARGS: a 0.1 declaration of send has no such argument.)  Also
 * publish's (routing.c), so that both take the same times.
 */
TimestampTz
arg_expires_at(FunctionCallInfo fcinfo, int argno)
{
	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return DT_NOEND;
	return PG_GETARG_TIMESTAMPTZ(argno);
}

/*
 * The optional priority argument: 0 when NULL (or when the declaration
 * has no such argument), else 0 to DELIVER_MAX_PRIORITY.  Also publish's.
 */
int
arg_priority(FunctionCallInfo fcinfo, int argno)
{
	int32		p;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return 0;
	p = PG_GETARG_INT32(argno);
	if (p < 0 || p > DELIVER_MAX_PRIORITY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("priority must be between 0 and %d", DELIVER_MAX_PRIORITY),
				 errdetail("It is %d.", p)));
	return p;
}

/*
 * One message's payload, headers, ordering key and idempotency key, taken
 * from consecutive arguments starting at argno (the key when idem_argno is
 * not negative), as a batch of one.
 */
typedef struct OneMessage
{
	Datum		v[4];
	bool		isnull[4];
} OneMessage;

/* fill m and b from the arguments (see OneMessage) */
static void
one_message_batch(FunctionCallInfo fcinfo, int argno, int idem_argno, OneMessage *m,
				  SendBatch *b)
{
	int			i;

	for (i = 0; i < 4; i++)
	{
		int			a = (i < 3) ? argno + i : idem_argno;

		m->isnull[i] = (a < 0) || PG_ARGISNULL(a);
		m->v[i] = m->isnull[i] ? (Datum) 0 : PG_GETARG_DATUM(a);
	}
	memset(b, 0, sizeof(*b));
	b->n = 1;
	b->payloads = &m->v[0];
	b->payload_nulls = &m->isnull[0];
	b->headers = &m->v[1];
	b->header_nulls = &m->isnull[1];
	b->keys = &m->v[2];
	b->key_nulls = &m->isnull[2];
	b->idem = &m->v[3];
	b->idem_nulls = &m->isnull[3];
}

/*
 * deliver.send(queue_name, payload, headers, ordering_key, idempotency_key,
 * delay) returns bigint
 */
Datum
deliver_send(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	SendBatch	b;
	OneMessage	m;
	int64		id;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	/* payload, headers, ordering_key, idempotency_key are arguments 1-4 */
	one_message_batch(fcinfo, 1, 4, &m, &b);
	b.delay_ms = arg_interval_ms(fcinfo, 5, 0, 0, DELIVER_MAX_DELAY_MS, "delay",
								 "0 and " DELIVER_MAX_DELAY_TEXT);
	b.expires_at = arg_expires_at(fcinfo, 6);
	b.has_expires_at = b.expires_at != DT_NOEND;
	b.priority = arg_priority(fcinfo, 7);
	send_messages(q, &b, &id);
	SPI_finish();
	PG_RETURN_INT64(id);
}

/* a SendOne as a batch of one */
static void
send_one_batch(const SendOne *m, SendBatch *b, Datum *v, bool *isnull)
{
	v[0] = m->payload;
	isnull[0] = false;
	v[1] = m->headers;
	isnull[1] = m->headers_null;
	v[2] = m->ordering_key;
	isnull[2] = m->ordering_key_null;
	v[3] = m->idempotency_key;
	isnull[3] = m->idempotency_key_null;
	memset(b, 0, sizeof(*b));
	b->n = 1;
	b->payloads = &v[0];
	b->payload_nulls = &isnull[0];
	b->headers = &v[1];
	b->header_nulls = &isnull[1];
	b->keys = &v[2];
	b->key_nulls = &isnull[2];
	b->idem = &v[3];
	b->idem_nulls = &isnull[3];
	b->delay_ms = m->delay_ms;
	b->expires_at = m->expires_at;
	b->has_expires_at = m->expires_at != DT_NOEND;
	b->priority = m->priority;
}

/*
 * Check that the current user may send the message to q and that q takes
 * it (the checks send makes before it writes anything); errors as send's.
 */
void
send_check_one(QueueInfo *q, const SendOne *m)
{
	SendBatch	b;
	Datum		v[4];
	bool		isnull[4];

	send_one_batch(m, &b, v, isnull);
	queue_check_privilege(q, ACL_INSERT, "send to");
	validate_batch(q, &b);
}

/*
 * Send one message to q as deliver.send does (the caller is connected to
 * SPI); returns its id (the first message's, for a repeated idempotency
 * key).
 */
int64
send_one(QueueInfo *q, const SendOne *m)
{
	SendBatch	b;
	Datum		v[4];
	bool		isnull[4];
	int64		id;

	send_one_batch(m, &b, v, isnull);
	send_messages(q, &b, &id);
	return id;
}

/*
 * The elements of an optional array argument, checked to match n.
 */
static void
array_arg(FunctionCallInfo fcinfo, int argno, Oid elemtype, const char *what,
		  int *n, Datum **values, bool **nulls)
{
	ArrayType  *a;
	int			cnt;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	*values = NULL;
	*nulls = NULL;
	if (PG_ARGISNULL(argno))
		return;
	a = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(a) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(a, elemtype, typlen, typbyval, typalign, values, nulls, &cnt);
	if (*n < 0)
		*n = cnt;
	else if (cnt != *n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s has %d elements, payloads has %d", what, cnt, *n)));
}

/*
 * deliver.send_batch(queue_name, payloads[], headers[], ordering_keys[],
 * idempotency_keys[], delay) returns bigint[]
 */
Datum
deliver_send_batch(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	SendBatch	b;
	int			n = -1;
	int64	   *ids;
	Datum	   *idd;
	int			i;
	ArrayType  *result;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	memset(&b, 0, sizeof(b));
	arg_not_null(fcinfo, 1, "payloads");
	array_arg(fcinfo, 1, JSONBOID, "payloads", &n, &b.payloads, &b.payload_nulls);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("payloads must not be empty")));
	if (n > deliver_max_batch)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("batch of %d messages is larger than deliver.max_batch_size (%d)",
						n, deliver_max_batch)));
	array_arg(fcinfo, 2, JSONBOID, "headers", &n, &b.headers, &b.header_nulls);
	array_arg(fcinfo, 3, TEXTOID, "ordering_keys", &n, &b.keys, &b.key_nulls);
	array_arg(fcinfo, 4, TEXTOID, "idempotency_keys", &n, &b.idem, &b.idem_nulls);
	b.n = n;
	b.delay_ms = arg_interval_ms(fcinfo, 5, 0, 0, DELIVER_MAX_DELAY_MS, "delay",
								 "0 and " DELIVER_MAX_DELAY_TEXT);
	b.expires_at = arg_expires_at(fcinfo, 6);
	b.has_expires_at = b.expires_at != DT_NOEND;
	b.priority = arg_priority(fcinfo, 7);
	if (b.idem == NULL && q->guarantee == G_EXACTLY_ONCE)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue \"%s\" is exactly_once: every message needs an idempotency_key", q->name)));

	/* outlives SPI_finish, which frees what was allocated since SPI_connect */
	ids = MemoryContextAlloc(caller, sizeof(int64) * n);
	send_messages(q, &b, ids);
	SPI_finish();

	idd = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		idd[i] = Int64GetDatum(ids[i]);
	result = spi_array(idd, NULL, n, INT8OID);
	PG_RETURN_ARRAYTYPE_P(result);
}

/*
 * Send m rows of an SPI result (from start) to q as new messages: columns
 * first_col .. first_col + 3 hold enqueued_at, ordering_key, headers and
 * payload.  keep_enqueued_at keeps each message's time of first sending
 * (else it is enqueued now); target_group 0 sends to every group of q.  No
 * idempotency key (the messages were sent once already: redrive, replay).
 */
void
send_rows(QueueInfo *q, SPITupleTable *rows, uint64 start, int m, int first_col,
		  bool keep_enqueued_at, int32 target_group)
{
	TupleDesc	d = rows->tupdesc;
	SendBatch	b;
	bool		isnull;
	int64	   *ids;

	memset(&b, 0, sizeof(b));
	b.n = m;
	if (keep_enqueued_at)
		b.enqueued_ats = palloc(sizeof(Datum) * m);
	b.keys = palloc(sizeof(Datum) * m);
	b.key_nulls = palloc(sizeof(bool) * m);
	b.headers = palloc(sizeof(Datum) * m);
	b.header_nulls = palloc(sizeof(bool) * m);
	b.payloads = palloc(sizeof(Datum) * m);
	b.payload_nulls = palloc0(sizeof(bool) * m);
	for (int k = 0; k < m; k++)
	{
		HeapTuple	t = rows->vals[start + k];

		if (keep_enqueued_at)
			b.enqueued_ats[k] = SPI_getbinval(t, d, first_col, &isnull);
		b.keys[k] = SPI_getbinval(t, d, first_col + 1, &b.key_nulls[k]);
		b.headers[k] = SPI_getbinval(t, d, first_col + 2, &b.header_nulls[k]);
		b.payloads[k] = SPI_getbinval(t, d, first_col + 3, &isnull);
	}
	b.target_group = target_group;
	/* (no expires_at: has_expires_at is false) */
	b.keyless = true;			/* sent once already: no idempotency key */
	ids = palloc(sizeof(int64) * m);
	send_messages(q, &b, ids);
}

/*
 * deliver.redrive(queue_name, message_ids DEFAULT NULL, consumer_group
 * DEFAULT NULL, to_queue DEFAULT NULL) returns bigint: dead letters (all,
 * or those message_ids name, of every group or of one) go back to the
 * group they died in as new messages, keeping their time of first sending,
 * ordering key, headers and payload (not an idempotency key).  One send
 * per group, in the order they died.  With to_queue they are sent to that
 * queue instead, once per message (a message dead in two groups goes once),
 * to every group there, as new messages (enqueued now); the calling role
 * (outside this SECURITY DEFINER function) needs the right to send to it,
 * and the right to receive from queue_name.
 * Returns how many dead letters were redriven.
 */
Datum
deliver_redrive(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	QueueInfo  *dst = NULL;
	Oid			types[2] = {INT8ARRAYOID, TEXTOID};
	Datum		args[2];
	char		nulls[2] = {' ', ' '};
	char		sql[768];
	char		rel[NAMEDATALEN];
	char		key[STATEMENT_KEY_LEN];
	SPITupleTable *rows;
	uint64		n;
	uint64		i;
	uint64		start;

	SPI_connect();
	if (PG_NARGS() > 3 && !PG_ARGISNULL(3))
	{
		dst = queue_lookup(PG_GETARG_TEXT_PP(3));
		/* the right first, before anything is looked at or moved */
		queue_require_privilege(dst, GetOuterUserId(), ACL_INSERT, "send to",
								"redrive with to_queue sends the dead letters to that queue.");
	}
	q = queue_lookup(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	if (dst)
	{
		/*
		 * Taking the dead letters out of their queue (into one the caller
		 * may read, perhaps) needs the right to receive from it, as
		 * deleting them does.
		 */
		queue_require_privilege(q, GetOuterUserId(), ACL_SELECT, "redrive to another queue the dead letters of",
								"redrive with to_queue takes the dead letters out of their queue: it needs the right to receive from it.");
		/* looked up again: q's lookup may have refreshed the cache */
		dst = queue_lookup(PG_GETARG_TEXT_PP(3));
		if (dst->queue_id == q->queue_id)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("to_queue is queue \"%s\" itself", q->name),
					 errhint("Leave to_queue NULL to send dead letters back to the group they died in.")));
	}
	if (!PG_ARGISNULL(2))
		(void) queue_group(q, PG_GETARG_TEXT_PP(2));	/* its error when there is none */
	args[0] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[0] = PG_ARGISNULL(1) ? 'n' : ' ';
	args[1] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[1] = PG_ARGISNULL(2) ? 'n' : ' ';
	snprintf(key, sizeof(key), "%s:%d", dst ? "redriveto" : "redrive", q->queue_id);
	if (dst)
		snprintf(sql, sizeof(sql),
				 "WITH d AS (DELETE FROM deliver.%s d USING deliver.consumer_group g "
				 "            WHERE g.group_id = d.group_id AND ($1 IS NULL OR d.message_id = ANY ($1)) "
				 "              AND ($2 IS NULL OR g.group_name = $2) RETURNING d.*) "
				 "SELECT DISTINCT ON (message_id) message_id, enqueued_at, ordering_key, headers, payload, "
				 "       (SELECT pg_catalog.count(*) FROM d) FROM d "
				 "ORDER BY message_id",
				 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
	else
		snprintf(sql, sizeof(sql),
				 "WITH d AS (DELETE FROM deliver.%s d USING deliver.consumer_group g "
				 "            WHERE g.group_id = d.group_id AND ($1 IS NULL OR d.message_id = ANY ($1)) "
				 "              AND ($2 IS NULL OR g.group_name = $2) RETURNING d.*) "
				 "SELECT group_id, enqueued_at, ordering_key, headers, payload FROM d "
				 "ORDER BY group_id, dead_at, message_id",
				 queue_relname(rel, QUEUE_DEAD, q->queue_id, 0));
	if (spi_run(q->owner, key, sql, 2, types, args, nulls, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not take the dead letters of queue \"%s\"", q->name);
	rows = SPI_tuptable;		/* kept until SPI_finish */
	n = SPI_processed;

	if (dst)
	{
		int64		taken = 0;

		if (n > 0)
		{
			bool		isnull;

			taken = DatumGetInt64(SPI_getbinval(rows->vals[0], rows->tupdesc, 6, &isnull));
			send_rows(dst, rows, 0, (int) n, 2, false, 0);
		}
		SPI_finish();
		PG_RETURN_INT64(taken);
	}

	for (start = 0; start < n; start = i)
	{
		TupleDesc	d = rows->tupdesc;
		bool		isnull;
		int32		group = DatumGetInt32(SPI_getbinval(rows->vals[start], d, 1, &isnull));

		for (i = start; i < n && DatumGetInt32(SPI_getbinval(rows->vals[i], d, 1, &isnull)) == group; i++)
			;
		send_rows(q, rows, start, (int) (i - start), 2, true, group);
	}
	SPI_finish();
	PG_RETURN_INT64((int64) n);
}

/*
 * deliver._requeue of version 0.1 (its redrive called it per message): the
 * 0.1 script still names it, so that a 0.1 installation can be created and
 * updated with this library; it is dropped by the update.
 */
Datum
deliver_requeue(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("deliver._requeue is gone in deliver %s", DELIVER_VERSION),
			 errhint("Run ALTER EXTENSION deliver UPDATE: redrive no longer needs it.")));
	PG_RETURN_NULL();
}
