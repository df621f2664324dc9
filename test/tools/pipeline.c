/*
 * pipeline: send SQL statements to a server in one libpq pipeline (extended
 * query protocol, one Sync at the end) and print what each one returned.
 *
 *   pipeline CONNINFO SQL...
 *
 * One line per statement: "ok N v1,v2,..." (N rows, the first column of
 * each) or "error SQLSTATE message".  For the TAP tests (psql 15 cannot
 * pipeline).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

int
main(int argc, char **argv)
{
	PGconn	   *conn;
	int			i;

	if (argc < 3)
	{
		fprintf(stderr, "usage: pipeline CONNINFO SQL...\n");
		return 2;
	}
	conn = PQconnectdb(argv[1]);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "pipeline: %s", PQerrorMessage(conn));
		return 1;
	}
	if (!PQenterPipelineMode(conn))
	{
		fprintf(stderr, "pipeline: %s", PQerrorMessage(conn));
		return 1;
	}
	for (i = 2; i < argc; i++)
		if (!PQsendQueryParams(conn, argv[i], 0, NULL, NULL, NULL, NULL, 0))
		{
			fprintf(stderr, "pipeline: %s", PQerrorMessage(conn));
			return 1;
		}
	if (!PQpipelineSync(conn))
	{
		fprintf(stderr, "pipeline: %s", PQerrorMessage(conn));
		return 1;
	}
	for (i = 2; i < argc; i++)
	{
		PGresult   *res = PQgetResult(conn);
		ExecStatusType st;

		if (res == NULL)
		{
			printf("missing\n");
			continue;
		}
		st = PQresultStatus(res);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		{
			int			r;

			printf("ok %d ", PQntuples(res));
			for (r = 0; r < PQntuples(res); r++)
				printf("%s%s", r ? "," : "", PQnfields(res) > 0 ? PQgetvalue(res, r, 0) : "");
			printf("\n");
		}
		else if (st == PGRES_PIPELINE_ABORTED)
			printf("aborted\n");
		else
		{
			const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
			const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);

			printf("error %s %s\n", state ? state : "?", msg ? msg : "?");
		}
		PQclear(res);
		/* the NULL that ends each statement's results */
		while ((res = PQgetResult(conn)) != NULL)
			PQclear(res);
	}
	{
		PGresult   *res = PQgetResult(conn);	/* the Sync */

		if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC)
			fprintf(stderr, "pipeline: no Sync result\n");
		PQclear(res);
	}
	PQfinish(conn);
	return 0;
}
