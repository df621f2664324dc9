/*
 * deliverd (cluster mode): the partition of a key and the ids of a
 * partitioned queue, "partition:epoch:id" (globalid.c).  No I/O, so the
 * fuzz target can drive it.
 */
#ifndef DELIVERD_GLOBALID_H
#define DELIVERD_GLOBALID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* the longest id, "999999:999999999:9223372036854775807", and its NUL */
#define GLOBAL_ID_MAX_LEN 40

/*
 * The partition of a key of len bytes among nparts: the first 32 bits of
 * its MD5, big-endian and unsigned, modulo nparts, as
 * deliver_cluster.partition_of computes it.
 */
int			partition_of_key(const char *key, size_t len, int nparts);

/*
 * Parse "partition:epoch:id" (digits only: 1 to 6, 1 to 9 and 1 to 19, the
 * id a bigint, as deliver_shard.parse_id takes it); fills the parts and the
 * id written without leading zeros into out.  false when malformed.
 */
bool		parse_global_id(const char *s, int *partition, int *epoch, int64_t *local_id,
							char *out, size_t cap);

#endif
