/*
 * tables.c
 *		The names of a queue's tables (see tables.h for the list).
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "utils/lsyscache.h"

#include "deliver.h"
#include "tables.h"

/* the name of segment n of queue id; queue_relname_is_segment parses it */
#define SEGMENT_NAME_FORMAT	"q%d_s%d"

/*
 * The name of a table (or the index, or the sequence) of a queue, written
 * into buf (NAMEDATALEN bytes) and returned; seg counts for the tables of
 * a segment only.
 */
char *
queue_relname(char *buf, QueueRel rel, int32 queue_id, int seg)
{
	switch (rel)
	{
		case QUEUE_SEGMENT:
			snprintf(buf, NAMEDATALEN, SEGMENT_NAME_FORMAT, queue_id, seg);
			break;
		case QUEUE_SEGMENT_INDEX:
			snprintf(buf, NAMEDATALEN, SEGMENT_NAME_FORMAT "_pos", queue_id, seg);
			break;
		case QUEUE_DONE:
			snprintf(buf, NAMEDATALEN, "q%d_done%d", queue_id, seg);
			break;
		case QUEUE_DEAD:
			snprintf(buf, NAMEDATALEN, "q%d_dead", queue_id);
			break;
		case QUEUE_DELAYED:
			snprintf(buf, NAMEDATALEN, "q%d_delayed", queue_id);
			break;
		case QUEUE_DEDUP:
			snprintf(buf, NAMEDATALEN, "q%d_dedup", queue_id);
			break;
		case QUEUE_ARCHIVE:
			snprintf(buf, NAMEDATALEN, "q%d_archive", queue_id);
			break;
		case QUEUE_SEQ:
			snprintf(buf, NAMEDATALEN, "q%d_seq", queue_id);
			break;
		default:
			elog(ERROR, "deliver: unknown table kind %d", (int) rel);
	}
	return buf;
}

/*
 * The OID of schema deliver.
 */
Oid
deliver_namespace(void)
{
	return get_namespace_oid(DELIVER_SCHEMA, false);
}

/*
 * The OID of a table of a queue in schema nsp; InvalidOid when it is
 * missing and missing_ok, else an error.
 */
Oid
queue_rel_oid(Oid nsp, QueueRel rel, int32 queue_id, int seg, bool missing_ok)
{
	char		name[NAMEDATALEN];
	Oid			relid;

	queue_relname(name, rel, queue_id, seg);
	relid = get_relname_relid(name, nsp);
	if (!OidIsValid(relid) && !missing_ok)
		elog(ERROR, "deliver: table deliver.%s is missing", name);
	return relid;
}

/*
 * Is relname the name of a segment table (q<id>_s<n>, nothing more)?  Then
 * *queue_id and *seg are its queue and segment.
 */
bool
queue_relname_is_segment(const char *relname, int32 *queue_id, int *seg)
{
	const char *p = relname;
	int64		id = 0;
	int			n = 0;

	/* by hand, not sscanf: logical decoding asks this of every change */
	if (*p++ != 'q' || *p < '1' || *p > '9')
		return false;
	for (; *p >= '0' && *p <= '9'; p++)
	{
		id = id * 10 + (*p - '0');
		if (id > PG_INT32_MAX)
			return false;
	}
	if (p[0] != '_' || p[1] != 's' || p[2] < '0' || p[2] > '9')
		return false;
	p += 2;
	if (*p == '0' && p[1] != '\0')
		return false;			/* (queue_relname writes no leading zero) */
	for (; *p >= '0' && *p <= '9'; p++)
	{
		n = n * 10 + (*p - '0');
		if (n >= DELIVER_MAX_SEGMENTS)
			return false;
	}
	if (*p != '\0')
		return false;
	*queue_id = (int32) id;
	*seg = n;
	return true;
}
