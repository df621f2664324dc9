/*
 * dedup.c
 *		Idempotency keys of exactly-once producers (deliver.q<id>_dedup).
 *
 * send claims the keys of a batch here, in one statement: a key seen on
 * the queue within its dedup window, or earlier in the same batch, gives
 * its message the first message's id, and nothing new is stored for it.
 * deliver.maintain() deletes the keys whose window ended.
 */
#include "postgres.h"

#include "executor/spi.h"

#include "dedup.h"
#include "deliver.h"
#include "spi.h"
#include "tables.h"

/*
 * Text keys equal?
 */
static bool
key_equal(Datum a, Datum b)
{
	text	   *x = DatumGetTextPP(a);
	text	   *y = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
		memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

/*
 * The id stored for an idempotency key that was claimed before.
 */
static int64
key_owner(QueueInfo *q, Datum idem)
{
	Oid			types[1] = {TEXTOID};
	char		key[STATEMENT_KEY_LEN];
	char		sql[256];
	char		rel[NAMEDATALEN];
	bool		isnull;
	int			rc;

	snprintf(key, sizeof(key), "keyid:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "SELECT message_id FROM deliver.%s WHERE idempotency_key = $1",
			 queue_relname(rel, QUEUE_DEDUP, q->queue_id, 0));
	rc = spi_run(q->owner, key, sql, 1, types, &idem, NULL, false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "deliver: idempotency key vanished");
	return DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Claim the idempotency keys idem[] of a batch of n messages, whose new
 * ids are ids[], in one statement.  A key seen within the dedup window (or
 * earlier in the batch) gives its message the first message's id, and
 * fresh[i] = false: nothing new is stored for it.
 */
void
dedup_claim_keys(QueueInfo *q, int n, Datum *idem, bool *idem_nulls, int64 *ids,
				 bool *fresh)
{
	Datum	   *kv = palloc(sizeof(Datum) * n);
	Datum	   *iv = palloc(sizeof(Datum) * n);
	int		   *first = palloc(sizeof(int) * n);
	bool	   *claimed = palloc0(sizeof(bool) * n);
	int			nk = 0;
	int			i;
	int			j;
	char		key[STATEMENT_KEY_LEN];
	char		sql[512];
	char		rel[NAMEDATALEN];
	Oid			types[3] = {TEXTARRAYOID, INT8ARRAYOID, INT8OID};
	Datum		args[3];
	int			rc;
	uint64		r;

	/* a key repeated inside the batch maps to its first message */
	for (i = 0; i < n; i++)
	{
		first[i] = i;
		if (idem_nulls[i])
			continue;
		for (j = 0; j < i; j++)
		{
			if (!idem_nulls[j] && first[j] == j && key_equal(idem[i], idem[j]))
			{
				first[i] = j;
				break;
			}
		}
		if (first[i] == i)
		{
			kv[nk] = idem[i];
			iv[nk] = Int64GetDatum(ids[i]);
			nk++;
		}
	}
	for (i = 0; i < n; i++)
		fresh[i] = (first[i] == i);
	if (nk == 0)
		return;

	snprintf(key, sizeof(key), "claim:%d", q->queue_id);
	snprintf(sql, sizeof(sql),
			 "INSERT INTO deliver.%s AS d "
			 "SELECT k, i, now() + $3 * interval '1 millisecond' FROM unnest($1, $2) AS u(k, i) "
			 "ON CONFLICT (idempotency_key) DO UPDATE "
			 "SET message_id = excluded.message_id, expires_at = excluded.expires_at "
			 "WHERE d.expires_at < now() "
			 "RETURNING message_id", queue_relname(rel, QUEUE_DEDUP, q->queue_id, 0));
	args[0] = PointerGetDatum(spi_array(kv, NULL, nk, TEXTOID));
	args[1] = PointerGetDatum(spi_array(iv, NULL, nk, INT8OID));
	args[2] = Int64GetDatum(q->dedup_window_ms);
	rc = spi_run(q->owner, key, sql, 3, types, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "deliver: idempotency key claim failed: %s", SPI_result_code_string(rc));

	/* the returned ids are the messages whose keys were new to us */
	for (r = 0; r < SPI_processed; r++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[r],
													 SPI_tuptable->tupdesc, 1, &isnull));

		for (i = 0; i < n; i++)
			if (ids[i] == id)
				claimed[i] = true;
	}
	if ((int) SPI_processed < nk)
	{
		for (i = 0; i < n; i++)
		{
			if (idem_nulls[i] || first[i] != i || claimed[i])
				continue;
			ids[i] = key_owner(q, idem[i]);
			fresh[i] = false;
		}
	}
	for (i = 0; i < n; i++)
		if (first[i] != i)
			ids[i] = ids[first[i]];
}
