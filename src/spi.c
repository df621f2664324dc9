/*
 * spi.c
 *		Every SQL statement deliver's C code runs, and the rights it runs with.
 *
 * deliver's functions check the caller's right on a queue themselves
 * (queue_check_privilege), then write the queue's tables with the rights
 * of their owner, as a SECURITY DEFINER function would: no role is granted
 * anything on those tables.  While a statement runs as the owner,
 * search_path is pinned to pg_catalog, pg_temp, so that a function or
 * operator a caller (or a database owner) put on its search_path -- an
 * unnest(int[]) or a bigint = bigint in schema public, say -- never runs
 * with the owner's rights.  The statements are prepared once per backend
 * (under the same pinned search_path) and kept.
 */
#include "postgres.h"

#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/lsyscache.h"

#include "spi.h"

#define PINNED_SEARCH_PATH	"pg_catalog, pg_temp"

typedef struct PlanEntry
{
	char		key[STATEMENT_KEY_LEN];
	SPIPlanPtr	plan;
} PlanEntry;

static HTAB *plan_cache = NULL;

/*
 * Run as owner, with search_path pinned, until owner_scope_exit.  An error
 * in between needs no cleanup: the (sub)transaction's abort restores the
 * user and the setting.
 */
void
owner_scope_enter(OwnerScope *s, Oid owner)
{
	GetUserIdAndSecContext(&s->save_user, &s->save_sec);
	SetUserIdAndSecContext(owner, s->save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	s->guc_level = NewGUCNestLevel();
	(void) set_config_option("search_path", PINNED_SEARCH_PATH, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Back to the user and search_path of before owner_scope_enter.
 */
void
owner_scope_exit(OwnerScope *s)
{
	AtEOXact_GUC(true, s->guc_level);
	SetUserIdAndSecContext(s->save_user, s->save_sec);
}

/*
 * The saved plan of a statement, prepared on first use.  key names the
 * statement and the queue (and segment) it is for.  Called in an owner
 * scope only, so that names resolve under the pinned search_path.
 */
static SPIPlanPtr
plan_cached(const char *key, const char *sql, int nargs, Oid *argtypes)
{
	PlanEntry  *e;
	bool		found;
	char		k[STATEMENT_KEY_LEN];

	if (plan_cache == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(k);
		ctl.entrysize = sizeof(PlanEntry);
		plan_cache = hash_create("deliver plans", 64, &ctl, HASH_ELEM | HASH_STRINGS);
	}
	if (strlen(key) >= sizeof(k))
		elog(ERROR, "deliver: statement key \"%s\" is too long", key);
	memset(k, 0, sizeof(k));
	strlcpy(k, key, sizeof(k));
	e = hash_search(plan_cache, k, HASH_ENTER, &found);
	if (!found)
		e->plan = NULL;
	if (e->plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, argtypes);

		if (p == NULL)
			elog(ERROR, "deliver: SPI_prepare failed for \"%s\": %s", sql,
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		e->plan = p;
	}
	return e->plan;
}

/*
 * Run a statement of deliver's as owner (the caller is connected to SPI):
 * prepared once under key, executed with args (nulls as SPI_execute_plan
 * takes them; NULL: none).  Returns SPI_execute_plan's result; the rows
 * are in SPI_tuptable.
 */
int
spi_run(Oid owner, const char *key, const char *sql, int nargs, Oid *argtypes,
		Datum *args, const char *nulls, bool read_only, long count)
{
	OwnerScope	scope;
	int			rc;

	owner_scope_enter(&scope, owner);
	rc = SPI_execute_plan(plan_cached(key, sql, nargs, argtypes), args, nulls, read_only, count);
	owner_scope_exit(&scope);
	return rc;
}

/*
 * A one-dimensional array of n values of type elemtype (nulls: NULL when
 * there is none), for a statement's parameter or a function's result.
 */
ArrayType *
spi_array(Datum *values, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, elemtype, typlen, typbyval, typalign);
}

/*
 * Run a read-only statement of deliver's as owner (as spi_run does) and
 * return its rows as the result of the calling set-returning function
 * (materialized); what says what it reads, for the error.
 */
void
spi_return_query(ReturnSetInfo *rsinfo, Oid owner, const char *key, const char *sql,
				 int nargs, Oid *argtypes, Datum *args, const char *nulls, const char *what)
{
	uint64		r;
	int			natts = rsinfo->setDesc->natts;
	Datum	   *values = palloc(sizeof(Datum) * natts);
	bool	   *isnull = palloc(sizeof(bool) * natts);
	int			rc;

	rc = spi_run(owner, key, sql, nargs, argtypes, args, nulls, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: could not read %s: %s", what, SPI_result_code_string(rc));
	for (r = 0; r < SPI_processed; r++)
	{
		heap_deform_tuple(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, values, isnull);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
}
