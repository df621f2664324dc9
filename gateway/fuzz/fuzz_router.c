/*
 * libFuzzer target: the request router, query parameter parsing, SQLSTATE
 * mapping, JSON string output and JWT verification get arbitrary bytes.
 * The cluster mode's delivery ids and key partitions too.
 * Input layout: method \n path \n query-string \n token (missing parts are
 * empty).  Checks that matched names are valid and that nothing crashes,
 * leaks or reads out of bounds (ASan/UBSan).
 */
#include "auth.h"
#include "buf.h"
#include "globalid.h"
#include "router.h"
#include "sqlstate.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
	char	   *keys[16];
	char	   *vals[16];
	int			n;
} kv_t;

static const char *
get(void *ctx, const char *key)
{
	kv_t	   *kv = ctx;
	int			i;

	for (i = 0; i < kv->n; i++)
		if (strcmp(kv->keys[i], key) == 0)
			return kv->vals[i];
	return NULL;
}

static void
parse_query(char *q, kv_t *kv)
{
	char	   *save = NULL;
	char	   *tok;

	kv->n = 0;
	for (tok = strtok_r(q, "&", &save); tok && kv->n < 16; tok = strtok_r(NULL, "&", &save))
	{
		char	   *eq = strchr(tok, '=');

		kv->keys[kv->n] = tok;
		kv->vals[kv->n] = eq ? (*eq = '\0', eq + 1) : tok + strlen(tok);
		kv->n++;
	}
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *s = malloc(size + 1);
	char	   *parts[4] = {"", "", "", ""};
	char	   *p;
	int			i;
	route_match m;
	receive_params rp;
	kv_t		kv;
	buf_t		b;
	long		v;
	char		role[ROLE_MAX_LEN + 1];
	const char *why;
	double		exp;
	bool		read_only;
	static const unsigned char key[] = "0123456789abcdef0123456789abcdef";

	memcpy(s, data, size);
	s[size] = '\0';
	p = s;
	for (i = 0; i < 4 && p; i++)
	{
		char	   *nl = i < 3 ? strchr(p, '\n') : NULL;

		parts[i] = p;
		if (nl)
			*nl = '\0';
		p = nl ? nl + 1 : NULL;
	}

	/* cluster mode's delivery ids too, on odd sizes */
	route_set_cluster(size % 2 == 1);
	if (route_request(parts[0], parts[1], &m) == 0)
	{
		assert(m.id > R_NOT_FOUND && m.id < R__COUNT);
		if (m.queue[0])
			assert(valid_name(m.queue));
		if (m.group[0])
			assert(valid_name(m.group));
		if (m.delivery_id[0] && size % 2 == 1)
		{
			int			pp,
						ep;
			int64_t		local;

			assert(parse_global_id(m.delivery_id, &pp, &ep, &local, NULL, 0));
			assert(pp == m.id_partition && ep == m.id_epoch && local >= 0);
		}
		else if (m.delivery_id[0])
		{
			char	   *end;

			(void) strtoll(m.delivery_id, &end, 10);
			assert(*end == '\0');
		}
		(void) route_needs_auth(m.id);
		(void) route_is_read_only(m.id);
		if (m.id == R_UI && m.file[0])
			assert(valid_ui_file(m.file) && m.file[0] != '.' && !strchr(m.file, '/'));
	}
	parse_query(parts[2], &kv);
	if (parse_receive_params(get, &kv, 30000, 1, &rp) == NULL)
	{
		assert(rp.wait_ms <= 30000);
		assert(!rp.has_group || valid_name(rp.group));
	}
	if (parse_seconds(parts[2], &v))
		assert(v > -1000000000000000L && v < 1000000000000000L);
	if (parse_int_range(parts[2], -5, 5, &v))
		assert(v >= -5 && v <= 5);
	(void) parse_int(parts[2], &v);
	(void) http_status_for_sqlstate(parts[2]);
	{
		int			pp,
					ep,
					np = (int) (size % 4096) + 1;
		int64_t		local;
		char		id[GLOBAL_ID_MAX_LEN];

		if (parse_global_id(parts[2], &pp, &ep, &local, id, sizeof(id)))
			assert(pp >= 0 && pp <= 999999 && ep >= 0 && local >= 0 && strlen(id) < sizeof(id));
		pp = partition_of_key(parts[2], strlen(parts[2]), np);
		assert(pp >= 0 && pp < np);
	}

	buf_init(&b);
	buf_json_str(&b, parts[1]);
	assert(b.len >= 2 && b.data[0] == '"' && b.data[b.len - 1] == '"');
	buf_free(&b);

	if (jwt_verify(parts[3], key, 32, 1700000000L, role, &exp, &read_only, &why) == 0)
	{
		assert(strlen(role) > 0 && strlen(role) <= ROLE_MAX_LEN && !auth_role_reserved(role));
		assert(exp == 0 || exp > 1700000000.0);
	}
	free(s);
	return 0;
}
