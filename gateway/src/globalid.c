/*
 * deliverd (cluster mode): the partition of a key and the ids of a
 * partitioned queue.  Pure functions, driven by the fuzz target.
 */
#include "globalid.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

int
partition_of_key(const char *key, size_t len, int nparts)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	uint32_t	v;

	if (nparts < 1)
		return 0;
	if (!EVP_Digest(key, len, md, &mdlen, EVP_md5(), NULL) || mdlen < 4)
		return 0;
	v = ((uint32_t) md[0] << 24) | ((uint32_t) md[1] << 16) | ((uint32_t) md[2] << 8) | md[3];
	return (int) (v % (uint32_t) nparts);
}

/* digits from *s, min to max of them, into *v (no overflow past limit); advances *s */
static bool
digits(const char **s, int min, int max, uint64_t limit, uint64_t *v)
{
	const char *p = *s;
	int			n = 0;

	*v = 0;
	while (*p >= '0' && *p <= '9')
	{
		unsigned	d = (unsigned) (*p - '0');

		if (++n > max || *v > (limit - d) / 10)
			return false;
		*v = *v * 10 + d;
		p++;
	}
	if (n < min)
		return false;
	*s = p;
	return true;
}

bool
parse_global_id(const char *s, int *partition, int *epoch, int64_t *local_id, char *out, size_t cap)
{
	uint64_t	p,
				e,
				l;

	if (!s || !digits(&s, 1, 6, 999999, &p) || *s++ != ':' ||
		!digits(&s, 1, 9, 999999999, &e) || *s++ != ':' ||
		!digits(&s, 1, 19, (uint64_t) INT64_MAX, &l) || *s)
		return false;
	*partition = (int) p;
	*epoch = (int) e;
	*local_id = (int64_t) l;
	if (out && (size_t) snprintf(out, cap, "%d:%d:%lld", *partition, *epoch, (long long) l) >= cap)
		return false;
	return true;
}
