/*
 * deliverd: the JSON answer of a receive, built from the rows of
 * deliver.receive (received.c) rather than by json_agg in the database.
 */
#ifndef DELIVERD_RECEIVED_H
#define DELIVERD_RECEIVED_H

#include <libpq-fe.h>

#include "buf.h"

/*
 * The columns a statement must return, in this order, for received_json:
 * message_id, delivery_id (bigints; delivery_id NULL at most once), payload,
 * headers (jsonb, NULL for none), ordering_key (text), attempt (int), enqueued_at and
 * lease_expires_at (each already JSON: to_json(timestamptz)::text).
 */
#define RECEIVED_COLUMNS 8

/*
 * Append to b the JSON array of the messages in res, byte for byte what
 * coalesce(json_agg(x), '[]') over the same columns gives: [] when there
 * are none.
 */
void		received_json(const PGresult *res, buf_t *b);
/* Append row i of res as one JSON object, as row_to_json gives it (the stream). */
void		received_row_json(const PGresult *res, int i, buf_t *b);

#endif
