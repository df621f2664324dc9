/*
 * worker.h
 *		The maintenance background workers (worker.c).
 */
#ifndef DELIVER_WORKER_H
#define DELIVER_WORKER_H

#include "nodes/pg_list.h"
#include "utils/guc.h"

#include "shmem.h"

extern void deliver_worker_init(void);
extern bool deliver_check_database_list(char **newval, void **extra, GucSource source);
extern bool deliver_worker_serves_database(void);
extern List *deliver_worker_databases(void);
extern void deliver_worker_wake(Oid dbid);

#endif							/* DELIVER_WORKER_H */
