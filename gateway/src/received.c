/*
 * deliverd: the JSON answer of a receive (see received.h).
 *
 * A receive of 100 messages used to be turned into JSON by json_agg in the
 * database: a composite per row, each column's type looked up and output
 * again, its name escaped.  That was about half of the database's work for
 * a receive.  Here the rows come back as text and the answer is put
 * together by concatenation: the jsonb columns are already JSON (jsonb_out,
 * as json_agg writes them), the timestamps come as to_json's text, the ids
 * are quoted (strings over JSON: a JavaScript number holds 53 bits), and
 * ordering_key, the only free text, is escaped as Postgres' escape_json
 * does (buf_json_strn).  The bytes are those json_agg gave, so clients see no difference.
 */
#include "received.h"

#include <stdio.h>
#include <string.h>

/* a string literal, without its NUL */
#define ADD_LIT(b, lit) buf_add((b), (lit), sizeof(lit) - 1)

/* column col of row i: its JSON text as it is, or null */
static void
raw_or_null(buf_t *b, const PGresult *res, int i, int col)
{
	if (PQgetisnull(res, i, col))
		ADD_LIT(b, "null");
	else
		buf_add(b, PQgetvalue(res, i, col), (size_t) PQgetlength(res, i, col));
}

/* column col of row i, a bigint, as a JSON string (ids are), or null */
static void
id_or_null(buf_t *b, const PGresult *res, int i, int col)
{
	if (PQgetisnull(res, i, col))
		ADD_LIT(b, "null");
	else
	{
		buf_add(b, "\"", 1);
		buf_add(b, PQgetvalue(res, i, col), (size_t) PQgetlength(res, i, col));
		buf_add(b, "\"", 1);
	}
}

void
received_row_json(const PGresult *res, int i, buf_t *b)
{
	ADD_LIT(b, "{\"message_id\":");
	id_or_null(b, res, i, 0);
	ADD_LIT(b, ",\"delivery_id\":");
	id_or_null(b, res, i, 1);
	ADD_LIT(b, ",\"payload\":");
	raw_or_null(b, res, i, 2);
	ADD_LIT(b, ",\"headers\":");
	raw_or_null(b, res, i, 3);
	ADD_LIT(b, ",\"ordering_key\":");
	if (PQgetisnull(res, i, 4))
		ADD_LIT(b, "null");
	else
		buf_json_strn(b, PQgetvalue(res, i, 4), (size_t) PQgetlength(res, i, 4));
	ADD_LIT(b, ",\"attempt\":");
	raw_or_null(b, res, i, 5);
	ADD_LIT(b, ",\"enqueued_at\":");
	raw_or_null(b, res, i, 6);
	ADD_LIT(b, ",\"lease_expires_at\":");
	raw_or_null(b, res, i, 7);
	ADD_LIT(b, "}");
}

void
received_json(const PGresult *res, buf_t *b)
{
	int			n = res && PQnfields(res) == RECEIVED_COLUMNS ? PQntuples(res) : 0;
	int			i;

	if (n == 0)
	{
		ADD_LIT(b, "[]");
		return;
	}
	ADD_LIT(b, "[");
	for (i = 0; i < n; i++)
	{
		/* json_agg's separator between composites */
		if (i > 0)
			ADD_LIT(b, ", \n ");
		received_row_json(res, i, b);
	}
	ADD_LIT(b, "]");
}
