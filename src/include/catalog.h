/*
 * catalog.h
 *		Looking up queues and consumer groups; queue privileges
 *		(catalog.c).
 */
#ifndef DELIVER_CATALOG_H
#define DELIVER_CATALOG_H

#include "storage/lockdefs.h"

#include "deliver.h"

extern QueueInfo *queue_lookup(text *name_t);
extern QueueInfo *queue_lookup_readonly(text *name_t);
extern QueueInfo *queue_lookup_by_id(int32 queue_id);
extern const GroupInfo *queue_group(QueueInfo *q, text *group_name);
extern Oid	catalog_owner(void);
extern bool queue_has_privilege(QueueInfo *q, Oid roleid, AclMode mode);
extern void queue_check_privilege(QueueInfo *q, AclMode mode, const char *what);
extern void queue_require_privilege(QueueInfo *q, Oid roleid, AclMode mode, const char *what,
									const char *detail);
extern void queue_check_metrics_privilege(QueueInfo *q);
extern void queue_lock_table(QueueInfo *q, Oid relid, LOCKMODE mode);

#endif							/* DELIVER_CATALOG_H */
