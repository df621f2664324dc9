/*
 * catalog.c
 *		Backend-local cache of queue definitions; queue privileges.
 *
 * Queues are looked up by name with a parameterised query; the tables of a
 * queue are found by names made from its numeric id, so user input never
 * becomes SQL text.  Who may send to and receive from a queue is in its
 * acl (deliver.grant_queue); queue_check_privilege checks it.  The cache is dropped whenever the shared catalog
 * generation moves (create, drop, purge, new consumer group).
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "registry.h"
#include "shmem.h"
#include "snap.h"
#include "spi.h"
#include "tables.h"

PG_FUNCTION_INFO_V1(deliver_has_queue_privilege);

static HTAB *queue_cache = NULL;
static QueueInfo *queue_lookup_ext(text *name_t, bool attach);
static uint32 queue_cache_gen = 0;
static MemoryContext queue_cache_cxt = NULL;

/* an interval the lookup query turned into milliseconds (int8) */
static int64
interval_ms(Datum d)
{
	return DatumGetInt64(d);
}

/* the owner of deliver's catalog (the extension's owner), per cache generation */
static Oid	catalog_owner_oid = InvalidOid;

/*
 * The owner of deliver.queue: the statements that read deliver's catalog
 * run as it.
 */
Oid
catalog_owner(void)
{
	if (!OidIsValid(catalog_owner_oid))
	{
		Oid			relid = get_relname_relid("queue", deliver_namespace());
		HeapTuple	tp;

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("deliver: table deliver.queue is missing"),
					 errhint("Create the extension deliver in this database.")));
		tp = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
		if (!HeapTupleIsValid(tp))
			elog(ERROR, "deliver: cache lookup failed for relation %u", relid);
		catalog_owner_oid = ((Form_pg_class) GETSTRUCT(tp))->relowner;
		ReleaseSysCache(tp);
	}
	return catalog_owner_oid;
}

/*
 * Load a queue's definition through SPI (the caller is connected); with
 * attach, also its entry in shared memory (queue_idx; -1 without).
 */
static bool
queue_load(QueueInfo *q, const char *name, bool attach)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			rc;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	td;
	char	   *guarantee;
	Oid			nsp;
	int			i;
	MemoryContext old;

	values[0] = CStringGetTextDatum(name);
	rc = spi_run(catalog_owner(), "queue_by_name",
				 "SELECT queue_id, queue_name, guarantee, "
				 "(extract(epoch FROM visibility_timeout) * 1000)::int8, "
				 "max_attempts, fifo, "
				 "(extract(epoch FROM dedup_window) * 1000)::int8, "
				 "(extract(epoch FROM retry_base) * 1000)::int8, "
				 "(extract(epoch FROM retry_max) * 1000)::int8, segments, acl, "
				 "fifo_key_limit, "
				 "(extract(epoch FROM message_ttl) * 1000000)::int8, on_expire = 'drop', max_depth, "
				 "overflow = 'drop_oldest', "
				 "ack_commit = 'async' AND guarantee = 'at_least_once', "
				 "priorities AND guarantee <> 'at_most_once' "
				 "FROM deliver.queue WHERE queue_name = $1",
				 1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: queue lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	td = SPI_tuptable->tupdesc;
	q->queue_id = DatumGetInt32(SPI_getbinval(tup, td, 1, &isnull));
	strlcpy(q->name, TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull)), NAMEDATALEN);
	guarantee = TextDatumGetCString(SPI_getbinval(tup, td, 3, &isnull));
	if (strcmp(guarantee, "at_most_once") == 0)
		q->guarantee = G_AT_MOST_ONCE;
	else if (strcmp(guarantee, "exactly_once") == 0)
		q->guarantee = G_EXACTLY_ONCE;
	else
		q->guarantee = G_AT_LEAST_ONCE;
	q->visibility_ms = interval_ms(SPI_getbinval(tup, td, 4, &isnull));
	q->max_attempts = DatumGetInt32(SPI_getbinval(tup, td, 5, &isnull));
	q->fifo = DatumGetBool(SPI_getbinval(tup, td, 6, &isnull));
	q->fifo_key_limit = DatumGetInt32(SPI_getbinval(tup, td, 12, &isnull));
	q->dedup_window_ms = interval_ms(SPI_getbinval(tup, td, 7, &isnull));
	q->retry_base_ms = interval_ms(SPI_getbinval(tup, td, 8, &isnull));
	q->retry_max_ms = interval_ms(SPI_getbinval(tup, td, 9, &isnull));
	q->nsegments = Min(DatumGetInt32(SPI_getbinval(tup, td, 10, &isnull)), DELIVER_MAX_SEGMENTS);
	{
		Datum		ttl = SPI_getbinval(tup, td, 13, &isnull);

		q->message_ttl_us = isnull ? 0 : Max(DatumGetInt64(ttl), 1);
		q->expire_drop = DatumGetBool(SPI_getbinval(tup, td, 14, &isnull));
		ttl = SPI_getbinval(tup, td, 15, &isnull);
		q->max_depth = isnull ? 0 : DatumGetInt64(ttl);
		q->overflow_drop = DatumGetBool(SPI_getbinval(tup, td, 16, &isnull));
		q->ack_async = DatumGetBool(SPI_getbinval(tup, td, 17, &isnull));
		q->priorities = DatumGetBool(SPI_getbinval(tup, td, 18, &isnull));
	}
	{
		Datum		acl = SPI_getbinval(tup, td, 11, &isnull);

		old = MemoryContextSwitchTo(queue_cache_cxt);
		q->acl = NULL;
		if (!isnull)
		{
			Acl		   *a = DatumGetAclPCopy(acl);

			/* an empty acl ('{}') has no dimension: nobody was granted */
			if (ARR_NDIM(a) == 1 && ACL_NUM(a) > 0)
				q->acl = a;
		}
		MemoryContextSwitchTo(old);
	}

	nsp = deliver_namespace();
	for (i = 0; i < q->nsegments; i++)
	{
		q->seg_rel[i] = queue_rel_oid(nsp, QUEUE_SEGMENT, q->queue_id, i, false);
		q->seg_idx[i] = queue_rel_oid(nsp, QUEUE_SEGMENT_INDEX, q->queue_id, i, false);
		q->done_rel[i] = queue_rel_oid(nsp, QUEUE_DONE, q->queue_id, i, false);
	}
	q->dead_rel = queue_rel_oid(nsp, QUEUE_DEAD, q->queue_id, 0, false);
	q->delayed_rel = queue_rel_oid(nsp, QUEUE_DELAYED, q->queue_id, 0, false);
	q->dedup_rel = queue_rel_oid(nsp, QUEUE_DEDUP, q->queue_id, 0, false);
	q->seq_rel = queue_rel_oid(nsp, QUEUE_SEQ, q->queue_id, 0, false);
	{
		HeapTuple	tp = SearchSysCache1(RELOID, ObjectIdGetDatum(q->done_rel[0]));

		if (!HeapTupleIsValid(tp))
			elog(ERROR, "deliver: cache lookup failed for relation %u", q->done_rel[0]);
		q->owner = ((Form_pg_class) GETSTRUCT(tp))->relowner;
		ReleaseSysCache(tp);
	}

	argtypes[0] = INT4OID;
	values[0] = Int32GetDatum(q->queue_id);
	rc = spi_run(catalog_owner(), "groups_of_queue",
				 "SELECT group_id, group_name, start_snapshot FROM deliver.consumer_group "
				 "WHERE queue_id = $1 ORDER BY group_id",
				 1, argtypes, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: consumer group lookup failed");
	old = MemoryContextSwitchTo(queue_cache_cxt);
	q->ngroups = (int) SPI_processed;
	q->groups = palloc0(sizeof(GroupInfo) * Max(q->ngroups, 1));
	MemoryContextSwitchTo(old);
	for (i = 0; i < q->ngroups; i++)
	{
		tup = SPI_tuptable->vals[i];
		td = SPI_tuptable->tupdesc;
		q->groups[i].group_id = DatumGetInt32(SPI_getbinval(tup, td, 1, &isnull));
		strlcpy(q->groups[i].name,
				TextDatumGetCString(SPI_getbinval(tup, td, 2, &isnull)), NAMEDATALEN);
		q->groups[i].start = MemoryContextAlloc(queue_cache_cxt, deliver_snap_size);
		dsnap_from_datum(SPI_getbinval(tup, td, 3, &isnull), q->groups[i].start);
	}
	q->queue_idx = -1;
	if (!attach)
		return true;
	q->queue_idx = deliver_queue_entry(MyDatabaseId, q->done_rel[0], q->queue_id, true);
	/* for the FIFO key index (fifo.c), which has no catalog at hand */
	deliver_queues[q->queue_idx].fifo_key_limit = q->fifo_key_limit;
	if (deliver_queues[q->queue_idx].cur_seg < 0)
	{
		/* first use since start (or since a purge): the active segment */
		rc = spi_run(catalog_owner(), "active_segment",
					 "SELECT seg FROM deliver.segment "
					 "WHERE queue_id = $1 AND state = 'active'",
					 1, argtypes, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "deliver: queue %d has no active segment", q->queue_id);
		{
			QueueEntry *qs = &deliver_queues[q->queue_idx];
			int32		seg = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1, &isnull));

			/* a switch that committed meanwhile wins */
			SpinLockAcquire(&qs->mutex);
			if (qs->cur_seg < 0)
				qs->cur_seg = seg;
			SpinLockRelease(&qs->mutex);
		}
	}
	return true;
}

/*
 * The extension's SQL objects must be those this library was built for:
 * after an upgrade of the library, ALTER EXTENSION deliver UPDATE.
 */
static void
check_schema_version(void)
{
	bool		isnull;
	char	   *v;

	if (spi_run(catalog_owner(), "extversion",
				"SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'deliver'",
				0, NULL, NULL, NULL, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "deliver: could not read the extension's version");
	v = TextDatumGetCString(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (strcmp(v, DELIVER_VERSION) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("deliver: the extension in this database is version %s, the library is version %s",
						v, DELIVER_VERSION),
				 errhint("Run ALTER EXTENSION deliver UPDATE.")));
}

/*
 * Drop the queue cache when the catalog changed since it was filled (the
 * shared catalog generation moved), and check the extension's version
 * when it is filled anew.
 */
static void
queue_cache_check(void)
{
	uint32		gen = pg_atomic_read_u32(&deliver_shared->catalog_gen);

	if (queue_cache != NULL && queue_cache_gen == gen)
		return;
	if (queue_cache_cxt)
		MemoryContextReset(queue_cache_cxt);
	else
		queue_cache_cxt = AllocSetContextCreate(TopMemoryContext, "deliver queue cache",
												ALLOCSET_SMALL_SIZES);
	{
		HASHCTL		ctl;

		ctl.keysize = NAMEDATALEN;
		ctl.entrysize = sizeof(QueueInfo);
		ctl.hcxt = queue_cache_cxt;
		queue_cache = hash_create("deliver queues", 32, &ctl,
								  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	queue_cache_gen = gen;
	catalog_owner_oid = InvalidOid;
	check_schema_version();
}

/*
 * The queue called name_t, or an error.  The caller is connected to SPI.
 */
QueueInfo *
queue_lookup(text *name_t)
{
	deliver_check_primary();
	return queue_lookup_ext(name_t, true);
}

/*
 * The queue called name_t for reading its tables only (dead letters, the
 * archive): on a standby too, where it gets no shared state (and is not
 * kept: a promotion must find the queues without it).
 */
QueueInfo *
queue_lookup_readonly(text *name_t)
{
	deliver_check_preloaded();
	return queue_lookup_ext(name_t, !RecoveryInProgress());
}

/*
 * The queue called name_t, from the cache or loaded; with attach, its
 * entry in shared memory too (and then it is cached).
 */
static QueueInfo *
queue_lookup_ext(text *name_t, bool attach)
{
	char	   *name;
	char		key[NAMEDATALEN];
	QueueInfo  *q;
	bool		found;

	if (name_t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("queue name must not be NULL")));
	name = text_to_cstring(name_t);
	if (strlen(name) >= NAMEDATALEN || strlen(name) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", clip_text(name, ERROR_QUOTE_BYTES))));

	queue_cache_check();
	memset(key, 0, sizeof(key));
	strlcpy(key, name, sizeof(key));
	q = hash_search(queue_cache, key, HASH_FIND, &found);
	if (found)
		return q;
	if (!attach)
	{
		q = palloc0(sizeof(QueueInfo));
		if (!queue_load(q, name, false))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue \"%s\" does not exist", clip_text(name, ERROR_QUOTE_BYTES))));
		return q;
	}

	{
		QueueInfo	tmp;

		memset(&tmp, 0, sizeof(tmp));
		if (!queue_load(&tmp, name, true))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("queue \"%s\" does not exist", clip_text(name, ERROR_QUOTE_BYTES)),
					 errhint("Create it with deliver.create_queue(), or see deliver.list_queues().")));
		q = hash_search(queue_cache, key, HASH_ENTER, &found);
		memcpy(((char *) q) + NAMEDATALEN, ((char *) &tmp) + NAMEDATALEN,
			   sizeof(QueueInfo) - NAMEDATALEN);
		q->gen = queue_cache_gen;
	}
	return q;
}

/*
 * The queue with this id (for internal callers), or an error.
 */
QueueInfo *
queue_lookup_by_id(int32 queue_id)
{
	HASH_SEQ_STATUS scan;
	QueueInfo  *q;
	Oid			argtypes[1] = {INT4OID};
	Datum		values[1];
	int			rc;

	deliver_check_primary();
	queue_cache_check();
	hash_seq_init(&scan, queue_cache);
	while ((q = hash_seq_search(&scan)) != NULL)
	{
		if (q->queue_id == queue_id)
		{
			hash_seq_term(&scan);
			return q;
		}
	}
	/* not cached: its name, then the one way of loading a queue */
	values[0] = Int32GetDatum(queue_id);
	rc = spi_run(catalog_owner(), "queue_name_by_id",
				 "SELECT queue_name FROM deliver.queue WHERE queue_id = $1",
				 1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: queue lookup failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue %d does not exist", queue_id)));
	return queue_lookup(cstring_to_text(SPI_getvalue(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1)));
}

/*
 * The consumer group of the queue called group_name, or an error.
 */
const GroupInfo *
queue_group(QueueInfo *q, text *group_name)
{
	char	   *name;
	int			i;

	if (group_name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("consumer group must not be NULL")));
	name = text_to_cstring(group_name);
	for (i = 0; i < q->ngroups; i++)
		if (strcmp(q->groups[i].name, name) == 0)
			return &q->groups[i];
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("consumer group \"%s\" does not exist on queue \"%s\"",
					clip_text(name, ERROR_QUOTE_BYTES), q->name),
			 errhint("Create it with deliver.create_consumer_group().")));
	return NULL;				/* keep compiler quiet */
}

/*
 * May roleid send (ACL_INSERT) to or receive (ACL_SELECT) from the queue?
 * The queue's owner (and whoever has its privileges) and superusers may do
 * both; others need a grant in the queue's acl (deliver.grant_queue), held
 * directly or through a role whose privileges they inherit.
 */
bool
queue_has_privilege(QueueInfo *q, Oid roleid, AclMode mode)
{
	if (superuser_arg(roleid) || has_privs_of_role(roleid, q->owner))
		return true;
	return q->acl != NULL && aclmask(q->acl, roleid, q->owner, mode, ACLMASK_ANY) == mode;
}

/*
 * Raise an error unless role may do what needs mode ("permission denied to
 * <what> queue ...", with detail when not NULL).
 */
void
queue_require_privilege(QueueInfo *q, Oid roleid, AclMode mode, const char *what, const char *detail)
{
	if (!queue_has_privilege(q, roleid, mode))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s queue \"%s\"", what, q->name),
				 detail ? errdetail_internal("%s", detail) : 0,
				 errhint("The queue's owner can allow it with deliver.grant_queue().")));
}

/*
 * Raise an error unless the current user may do what needs mode.
 */
void
queue_check_privilege(QueueInfo *q, AclMode mode, const char *what)
{
	queue_require_privilege(q, GetUserId(), mode, what, NULL);
}

/*
 * Metrics of a queue: for those who may receive from it and for members of
 * pg_monitor.
 */
void
queue_check_metrics_privilege(QueueInfo *q)
{
	if (!has_privs_of_role(GetUserId(), ROLE_PG_MONITOR))
		queue_check_privilege(q, ACL_SELECT, "read metrics of");
}

/*
 * Lock one of the queue's tables.  The queue was looked up before the lock
 * was taken: a drop_queue that held its tables meanwhile has dropped them
 * when the lock is granted (the lock taken, the catalog is read anew), and
 * the caller must not go on to its sequence or other tables.  That is
 * reported as for any queue that does not exist.
 */
void
queue_lock_table(QueueInfo *q, Oid relid, LOCKMODE mode)
{
	LockRelationOid(relid, mode);
	if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
	{
		UnlockRelationOid(relid, mode);
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("queue \"%s\" does not exist", q->name),
				 errdetail("It was dropped.")));
	}
}

/*
 * deliver.has_queue_privilege(queue_name, privilege) returns boolean: may
 * the current user 'send', 'receive' or (for 'all') both?
 */
Datum
deliver_has_queue_privilege(PG_FUNCTION_ARGS)
{
	QueueInfo  *q;
	char	   *priv;
	AclMode		mode;
	bool		result;

	arg_not_null(fcinfo, 1, "privilege");
	priv = text_to_cstring(PG_GETARG_TEXT_PP(1));
	if (strcmp(priv, "send") == 0)
		mode = ACL_INSERT;
	else if (strcmp(priv, "receive") == 0)
		mode = ACL_SELECT;
	else if (strcmp(priv, "all") == 0)
		mode = ACL_INSERT | ACL_SELECT;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid privilege \"%s\"", clip_text(priv, ERROR_QUOTE_BYTES)),
				 errhint("Use send, receive or all.")));
	SPI_connect();
	q = queue_lookup_readonly(PG_ARGISNULL(0) ? NULL : PG_GETARG_TEXT_PP(0));
	result = queue_has_privilege(q, GetUserId(), mode & ACL_INSERT ? ACL_INSERT : ACL_SELECT) &&
		queue_has_privilege(q, GetUserId(), mode & ACL_SELECT ? ACL_SELECT : ACL_INSERT);
	SPI_finish();
	PG_RETURN_BOOL(result);
}
