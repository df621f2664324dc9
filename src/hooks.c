/*
 * hooks.c
 *		The executor and utility hooks: how deeply statements are nested
 *		(an at-most-once receive must be the client's own statement), and
 *		the utility statements deliver's shared state follows (COMMIT or
 *		ROLLBACK PREPARED, DROP DATABASE, DROP EXTENSION deliver).
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "executor/executor.h"
#include "tcop/utility.h"

#include "hooks.h"
#include "registry.h"
#include "xact.h"

static ProcessUtility_hook_type prev_utility_hook = NULL;
static ExecutorRun_hook_type prev_executor_run = NULL;
static ExecutorFinish_hook_type prev_executor_finish = NULL;

/*
 * How deeply statements are nested: 1 while the client's statement runs, 2
 * and more for statements run by functions (PL/pgSQL, SQL functions, DO,
 * CALL).  At-most-once receives are for the client's own statement only.
 */
static int	statement_nesting = 0;

/* is the statement running the client's own (not one run by a function)? */
bool
statement_is_top_level(void)
{
	return statement_nesting <= 1;
}

/* ExecutorRun_hook: count the nesting of statements */
static void
deliver_executor_run(QueryDesc *queryDesc, ScanDirection direction, uint64 count, bool execute_once)
{
	statement_nesting++;
	PG_TRY();
	{
		if (prev_executor_run)
			prev_executor_run(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		statement_nesting--;
	}
	PG_END_TRY();
}

/* ExecutorFinish_hook: count the nesting of statements */
static void
deliver_executor_finish(QueryDesc *queryDesc)
{
	statement_nesting++;
	PG_TRY();
	{
		if (prev_executor_finish)
			prev_executor_finish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		statement_nesting--;
	}
	PG_END_TRY();
}

/*
 * ProcessUtility_hook: count the nesting of statements too, and follow the
 * statements deliver's shared state must know of.  COMMIT PREPARED /
 * ROLLBACK PREPARED settle acks and sends of another transaction: note it,
 * so that this transaction's end wakes the queues and has every group look
 * at its pending finishes again.  DROP DATABASE and DROP EXTENSION deliver
 * forget the state of the queues they drop.
 */
static void
deliver_utility_hook(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					 ProcessUtilityContext context, ParamListInfo params,
					 QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	Node	   *node = pstmt->utilityStmt;
	volatile Oid dropped_db = InvalidOid;

	/* a database dropped, the extension dropped: forget their queues' state */
	if (IsA(node, DropdbStmt))
		dropped_db = get_database_oid(((DropdbStmt *) node)->dbname, true);
	if (IsA(node, DropStmt) && ((DropStmt *) node)->removeType == OBJECT_EXTENSION)
	{
		ListCell   *lc;

		foreach(lc, ((DropStmt *) node)->objects)
			if (IsA(lfirst(lc), String) && strcmp(strVal(lfirst(lc)), "deliver") == 0)
				xact_note_catalog(-1, 0, CATALOG_FORGET_DATABASE);
	}
	if (IsA(node, TransactionStmt) &&
		(((TransactionStmt *) node)->kind == TRANS_STMT_COMMIT_PREPARED ||
		 ((TransactionStmt *) node)->kind == TRANS_STMT_ROLLBACK_PREPARED))
		xact_note_prepared_finished();
	statement_nesting++;
	PG_TRY();
	{
		if (prev_utility_hook)
			prev_utility_hook(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
									dest, qc);
	}
	PG_FINALLY();
	{
		statement_nesting--;
	}
	PG_END_TRY();
	if (OidIsValid(dropped_db))
		deliver_forget_database(dropped_db);
}

/*
 * Install the executor and utility hooks (from _PG_init, when preloading).
 */
void
deliver_hooks_init(void)
{
	prev_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = deliver_utility_hook;
	prev_executor_run = ExecutorRun_hook;
	ExecutorRun_hook = deliver_executor_run;
	prev_executor_finish = ExecutorFinish_hook;
	ExecutorFinish_hook = deliver_executor_finish;
}
