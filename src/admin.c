/*
 * admin.c
 *		Small C helpers of the administration functions.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/builtins.h"

#include "registry.h"
#include "shmem.h"
#include "snap.h"
#include "tables.h"
#include "xact.h"

PG_FUNCTION_INFO_V1(deliver_latest_snapshot);
PG_FUNCTION_INFO_V1(deliver_catalog_changed);

/*
 * deliver._latest_snapshot() returns pg_snapshot: the latest snapshot, with
 * the caller's own transaction counted as running.
 */
Datum
deliver_latest_snapshot(PG_FUNCTION_ARGS)
{
	DSnap	   *s;

	deliver_check_primary();
	s = palloc(deliver_snap_size);
	dsnap_latest(s);
	PG_RETURN_DATUM(dsnap_to_datum(s));
}

/*
 * deliver._catalog_changed(queue_id, action, group_id)
 */
Datum
deliver_catalog_changed(PG_FUNCTION_ARGS)
{
	int32		queue_id = PG_GETARG_INT32(0);
	char	   *action = text_to_cstring(PG_GETARG_TEXT_PP(1));
	int32		group_id = PG_GETARG_INT32(2);
	char		a;
	Oid			relid;
	int32		qidx;

	deliver_check_primary();
	if (strcmp(action, "none") == 0)
		a = CATALOG_NONE;
	else if (strcmp(action, "reset") == 0)
		a = CATALOG_RESET;
	else if (strcmp(action, "forget") == 0)
		a = CATALOG_FORGET;
	else if (strcmp(action, "forget_group") == 0)
		a = CATALOG_FORGET_GROUP;
	else if (strcmp(action, "flow") == 0)
		a = CATALOG_FLOW;
	else
		elog(ERROR, "deliver: unknown catalog action \"%s\"", action);

	/* the queue's shared entry, if it has one (its tables still exist) */
	relid = queue_rel_oid(deliver_namespace(), QUEUE_DONE, queue_id, 0, true);
	qidx = OidIsValid(relid) ? deliver_queue_entry(MyDatabaseId, relid, queue_id, false) : -1;
	xact_note_catalog(qidx, group_id, a);
	PG_RETURN_VOID();
}
