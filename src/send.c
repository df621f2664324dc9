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

#include "access/detoast.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/xid8.h"

#include "args.h"
#include "catalog.h"
#include "dedup.h"
#include "deliver.h"
#include "segment.h"
#include "settings.h"
#include "spi.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_send);
PG_FUNCTION_INFO_V1(deliver_send_batch);
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
} SendBatch;

/*
 * Reject a key (ordering or idempotency) longer than DELIVER_MAX_KEY_BYTES.
 */
static void
check_text_len(Datum d, const char *what, int i, int n)
{
	if (VARSIZE_ANY_EXHDR(DatumGetPointer(d)) > DELIVER_MAX_KEY_BYTES)
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
			if (VARSIZE_ANY_EXHDR(DatumGetPointer(b->idem[i])) == 0)
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
	Datum		args[8];
	int			rc;
	int			seg;

	queue_check_privilege(q, ACL_INSERT, "send to");
	validate_batch(q, b);

	/* the xid is taken before the segment is chosen (see rotation) */
	txid = GetTopFullTransactionId();
	seg = queue_current_segment(q);

	/*
	 * The table the messages go to is locked before the id sequence and
	 * the idempotency keys: the order drop_queue and purge_queue follow
	 * (deliver._lock_queue).
	 */
	LockRelationOid(delayed ? q->delayed_rel : q->seg_rel[seg], RowExclusiveLock);

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

	if (delayed)
	{
		static Oid	delayed_types[8] = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID,
		TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID, XID8OID};

		types = delayed_types;
		nargs = 8;
		snprintf(key, sizeof(key), "delay:%d", q->queue_id);
		snprintf(sql, sizeof(sql),
				 "INSERT INTO deliver.%s "
				 "(deliver_at, target_group, enqueued_at, message_id, ordering_key, headers, payload, txid) "
				 "SELECT $1, $2, $3, i, k, h, p, $8 FROM unnest($4, $5, $6, $7) AS u(i, k, h, p)",
				 queue_relname(rel, QUEUE_DELAYED, q->queue_id, 0));
		args[0] = TimestampTzGetDatum(now + b->delay_ms * 1000);
		args[7] = FullTransactionIdGetDatum(txid);
	}
	else
	{
		static Oid	send_types[7] = {XID8OID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID,
		TEXTARRAYOID, JSONBARRAYOID, JSONBARRAYOID};

		types = send_types;
		nargs = 7;

		snprintf(key, sizeof(key), "send:%d:%d", q->queue_id, seg);
		snprintf(sql, sizeof(sql),
				 "INSERT INTO deliver.%s "
				 "(txid, target_group, enqueued_at, message_id, ordering_key, headers, payload) "
				 "SELECT $1, $2, $3, i, k, h, p FROM unnest($4, $5, $6, $7) AS u(i, k, h, p)",
				 queue_relname(rel, QUEUE_SEGMENT, q->queue_id, seg));
		args[0] = FullTransactionIdGetDatum(txid);
	}
	{
		char		nulls[8] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

		if (b->target_group == 0)
			nulls[1] = 'n';
		args[1] = Int32GetDatum(b->target_group);
		args[2] = TimestampTzGetDatum(enq);
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
	send_messages(q, &b, &id);
	SPI_finish();
	PG_RETURN_INT64(id);
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
 * deliver._requeue(queue_id, target_group, enqueued_at, ordering_key,
 * headers, payload): one message for one group (redrive).
 */
Datum
deliver_requeue(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	SendBatch	b;
	OneMessage	m;
	int64		id;
	Datum		t;
	bool		tn;

	SPI_connect();
	q = queue_lookup_by_id(PG_GETARG_INT32(0));
	/* arguments 3-5 are ordering_key, headers, payload: put them in order */
	one_message_batch(fcinfo, 3, -1, &m, &b);
	t = m.v[0];
	tn = m.isnull[0];
	m.v[0] = m.v[2];
	m.isnull[0] = m.isnull[2];
	m.v[2] = t;
	m.isnull[2] = tn;
	b.target_group = PG_GETARG_INT32(1);
	b.enqueued_at = PG_ARGISNULL(2) ? 0 : PG_GETARG_TIMESTAMPTZ(2);
	b.keyless = true;			/* a redriven message keeps no idempotency key */
	send_messages(q, &b, &id);
	SPI_finish();
	PG_RETURN_INT64(id);
}
