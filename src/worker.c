/*
 * worker.c
 *		The maintenance background worker.
 *
 * One worker, connected to the database named by deliver.database, runs
 * deliver.maintain() for each queue in a transaction of its own every
 * deliver.maintenance_interval: segment rotation and truncation, expiry of
 * idempotency keys, and moving delayed messages that came due (which wakes
 * long polls when it commits).  An error in one queue is logged and the
 * loop goes on with the others.
 */
#include "deliver.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

PGDLLEXPORT void deliver_worker_main(Datum arg);

char	   *deliver_database = NULL;
int			deliver_maintenance_interval_ms = 1000;

/*
 * Register the worker (from _PG_init, when preloading) if a database is
 * configured.
 */
void
deliver_worker_register(void)
{
	BackgroundWorker worker;

	if (deliver_database == NULL || deliver_database[0] == '\0')
		return;
	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "deliver");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "deliver_worker_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "deliver maintenance");
	snprintf(worker.bgw_type, BGW_MAXLEN, "deliver maintenance");
	RegisterBackgroundWorker(&worker);
}

/*
 * Does the maintenance worker run in the current database?
 */
bool
deliver_worker_serves_database(void)
{
	static Oid	checked_db = InvalidOid;
	static bool serves = false;

	if (checked_db != MyDatabaseId)
	{
		char	   *name = get_database_name(MyDatabaseId);

		serves = deliver_database && name && strcmp(deliver_database, name) == 0;
		checked_db = MyDatabaseId;
	}
	return serves;
}

/*
 * Run one statement in a transaction of its own; on error, log it and go
 * on.  Returns the first column of each row as text.
 */
static List *
run_in_transaction(const char *sql, int nargs, Oid *argtypes, Datum *args)
{
	MemoryContext outer = CurrentMemoryContext;
	List	   *volatile result = NIL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		uint64		i;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, sql);
		if (SPI_execute_with_args(sql, nargs, argtypes, args, NULL, false, 0) < 0)
			elog(ERROR, "deliver: \"%s\" failed", sql);
		for (i = 0; i < SPI_processed; i++)
		{
			char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
			MemoryContext old = MemoryContextSwitchTo(outer);

			result = lappend(result, v ? pstrdup(v) : NULL);
			MemoryContextSwitchTo(old);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(outer);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		result = NIL;
	}
	PG_END_TRY();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return result;
}

void
deliver_worker_main(Datum arg)
{
	MemoryContext loop_cxt;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(deliver_database, NULL, 0);
	elog(LOG, "deliver maintenance worker started in database \"%s\"", deliver_database);

	loop_cxt = AllocSetContextCreate(TopMemoryContext, "deliver worker loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		List	   *queues;
		ListCell   *lc;
		MemoryContext old;

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 deliver_maintenance_interval_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		old = MemoryContextSwitchTo(loop_cxt);
		queues = NIL;
		if (run_in_transaction("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'deliver'",
							   0, NULL, NULL) != NIL)
			queues = run_in_transaction("SELECT queue_name FROM deliver.queue ORDER BY queue_id",
										0, NULL, NULL);
		foreach(lc, queues)
		{
			Oid			types[1] = {TEXTOID};
			Datum		args[1];

			CHECK_FOR_INTERRUPTS();
			args[0] = CStringGetTextDatum((char *) lfirst(lc));
			(void) run_in_transaction("SELECT deliver._move_due(queue_name => $1)", 1, types, args);
			(void) run_in_transaction("SELECT count(*) FROM deliver.maintain($1)", 1, types, args);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_cxt);
	}
}
