/*
 * deliverd: bearer tokens to Postgres roles.
 *
 * A token is either a JWT signed with HS256 (the shared secret jwt_secret;
 * claims: "role" required, "exp" and "nbf" checked when present), as
 * PostgREST does, or a line "token role" of the token file.  A token may be
 * read-only (a JWT's claim "read_only": true, a token file line
 * "token role read-only"): http.c then refuses every route that changes
 * something (router.c, route_is_read_only).  Without a token
 * the request runs as anon_role when one is configured, else it gets 401.
 * No token may name a reserved role (auth_role_reserved): "none" would
 * reset the request to the gateway's own login role.
 * The role is applied by the pool with set_config('role', $1, true) in the
 * request's transaction, so Postgres GRANTs decide what it may do.
 */
#include "auth.h"

#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct
{
	char	   *token;
	char		role[ROLE_MAX_LEN + 1];
	bool		read_only;
} token_entry;

static unsigned char *jwt_key;
static size_t jwt_keylen;
static token_entry *tokens;
static int	ntokens;
static char anon[ROLE_MAX_LEN + 1];

static bool
valid_role(const char *r)
{
	size_t		n = strlen(r);

	return n > 0 && n <= ROLE_MAX_LEN;
}

/*
 * Names set_config('role', ...) takes for something other than a role:
 * "none" resets to the session's login role (a token naming it would run
 * as the gateway itself), and public and the current_user family name no
 * role.  Refused in any case: no one means a role spelt "None" by them.
 */
bool
auth_role_reserved(const char *r)
{
	static const char *const reserved[] = {"none", "public", "current_user", "session_user",
	"current_role", NULL};
	int			i;

	for (i = 0; reserved[i]; i++)
		if (strcasecmp(r, reserved[i]) == 0)
			return true;
	return false;
}

int
auth_init(const char *jwt_secret, const char *token_file, const char *anon_role)
{
	if (jwt_secret && *jwt_secret)
	{
		jwt_keylen = strlen(jwt_secret);
		if (jwt_keylen < 32)
		{
			fprintf(stderr, "deliverd: jwt_secret must be at least 32 characters\n");
			return -1;
		}
		jwt_key = (unsigned char *) strdup(jwt_secret);
	}
	if (token_file && *token_file)
	{
		FILE	   *f = fopen(token_file, "r");
		char		line[1024];
		int			lineno = 0;

		if (!f)
		{
			fprintf(stderr, "deliverd: cannot open token_file %s\n", token_file);
			return -1;
		}
		while (fgets(line, sizeof(line), f))
		{
			char	   *tok,
					   *role,
					   *mode,
					   *save;

			lineno++;
			line[strcspn(line, "\r\n")] = '\0';
			tok = strtok_r(line, " \t", &save);
			if (!tok || tok[0] == '#')
				continue;
			role = strtok_r(NULL, " \t", &save);
			mode = role ? strtok_r(NULL, " \t", &save) : NULL;
			if (!role || !valid_role(role) || (mode && strcmp(mode, "read-only") != 0) ||
				strtok_r(NULL, " \t", &save) || strlen(tok) < 16)
			{
				fprintf(stderr, "deliverd: %s:%d: expected \"token role\" or \"token role read-only\" "
						"(token of 16 or more characters)\n", token_file, lineno);
				fclose(f);
				return -1;
			}
			if (auth_role_reserved(role))
			{
				fprintf(stderr, "deliverd: %s:%d: role %s is reserved (none, public, current_user, "
						"session_user, current_role)\n", token_file, lineno, role);
				fclose(f);
				return -1;
			}
			tokens = realloc(tokens, sizeof(token_entry) * (size_t) (ntokens + 1));
			tokens[ntokens].token = strdup(tok);
			snprintf(tokens[ntokens].role, sizeof(tokens[ntokens].role), "%s", role);
			tokens[ntokens].read_only = mode != NULL;
			ntokens++;
		}
		fclose(f);
	}
	/* anon_role none (or empty): no anonymous access */
	if (anon_role && *anon_role && strcasecmp(anon_role, "none") != 0)
	{
		if (!valid_role(anon_role) || auth_role_reserved(anon_role))
		{
			fprintf(stderr, "deliverd: anon_role %s is reserved or longer than %d bytes "
					"(none means no anonymous access)\n", anon_role, ROLE_MAX_LEN);
			return -1;
		}
		snprintf(anon, sizeof(anon), "%s", anon_role);
	}
	return 0;
}

bool
auth_configured(void)
{
	return jwt_key || ntokens || anon[0];
}

/* base64url without padding; returns the decoded length or -1 */
static long
b64url_decode(const char *in, size_t n, unsigned char *out, size_t outcap)
{
	unsigned	acc = 0;
	int			bits = 0;
	size_t		o = 0;
	size_t		i;

	for (i = 0; i < n; i++)
	{
		int			c = (unsigned char) in[i];
		int			v;

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return -1;
		acc = (acc << 6) | (unsigned) v;
		bits += 6;
		if (bits >= 8)
		{
			bits -= 8;
			if (o >= outcap)
				return -1;
			out[o++] = (unsigned char) ((acc >> bits) & 0xff);
		}
	}
	if (bits >= 6)
		return -1;
	return (long) o;
}

#define JWT_PART_MAX 4096

static json_t *
decode_part(const char *p, size_t n)
{
	unsigned char buf[JWT_PART_MAX];
	long		len = b64url_decode(p, n, buf, sizeof(buf));

	if (len < 0)
		return NULL;
	return json_loadb((const char *) buf, (size_t) len, JSON_REJECT_DUPLICATES, NULL);
}

int
jwt_verify(const char *token, const unsigned char *key, size_t keylen, long now,
		   char *role, double *exp, bool *read_only, const char **why)
{
	const char *d1 = strchr(token, '.');
	const char *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
	unsigned char sig[64];
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	long		siglen;
	json_t	   *hdr = NULL,
			   *claims = NULL;
	json_t	   *v;
	int			rc = 401;

	*why = "malformed token";
	*exp = 0;
	*read_only = false;
	if (!d1 || !d2 || strchr(d2 + 1, '.') || strlen(token) > 3 * JWT_PART_MAX)
		return 401;
	siglen = b64url_decode(d2 + 1, strlen(d2 + 1), sig, sizeof(sig));
	if (siglen != 32)
		return 401;
	hdr = decode_part(token, (size_t) (d1 - token));
	if (!hdr || !json_is_object(hdr))
		goto out;
	v = json_object_get(hdr, "alg");
	if (!json_is_string(v) || strcmp(json_string_value(v), "HS256") != 0)
	{
		*why = "token algorithm must be HS256";
		goto out;
	}
	if (!HMAC(EVP_sha256(), key, (int) keylen, (const unsigned char *) token,
			  (size_t) (d2 - token), mac, &maclen) || maclen != 32 ||
		CRYPTO_memcmp(mac, sig, 32) != 0)
	{
		*why = "invalid token signature";
		goto out;
	}
	claims = decode_part(d1 + 1, (size_t) (d2 - d1 - 1));
	if (!claims || !json_is_object(claims))
		goto out;
	v = json_object_get(claims, "exp");
	if (v && (!json_is_number(v) || json_number_value(v) <= (double) now))
	{
		*why = "token expired";
		goto out;
	}
	v = json_object_get(claims, "nbf");
	if (v && (!json_is_number(v) || json_number_value(v) > (double) now))
	{
		*why = "token not valid yet";
		goto out;
	}
	v = json_object_get(claims, "role");
	if (!json_is_string(v) || !valid_role(json_string_value(v)) ||
		strlen(json_string_value(v)) != json_string_length(v))
	{
		*why = "token has no valid role claim";
		goto out;
	}
	if (auth_role_reserved(json_string_value(v)))
	{
		*why = "token role is reserved (none, public, current_user, session_user, current_role)";
		goto out;
	}
	v = json_object_get(claims, "read_only");
	if (v && !json_is_boolean(v))
	{
		*why = "token claim read_only must be true or false";
		goto out;
	}
	*read_only = v && json_is_true(v);
	v = json_object_get(claims, "role");
	strcpy(role, json_string_value(v));
	v = json_object_get(claims, "exp");
	*exp = v ? json_number_value(v) : 0;
	rc = 0;
	*why = NULL;
out:
	json_decref(hdr);
	json_decref(claims);
	return rc;
}

bool
auth_bearer_is(const char *authorization, const char *secret)
{
	const char *tok;
	size_t		n = strlen(secret);

	if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0)
		return false;
	for (tok = authorization + 7; *tok == ' '; tok++)
		;
	return strlen(tok) == n && CRYPTO_memcmp(tok, secret, n) == 0;
}

int
auth_request(const char *authorization, char *role, double *exp, bool *read_only,
			 const char **why)
{
	const char *tok;
	int			i;

	*exp = 0;
	*read_only = false;

	if (!authorization || !*authorization)
	{
		if (anon[0])
		{
			strcpy(role, anon);
			return 0;
		}
		*why = "authentication required: send Authorization: Bearer <token>";
		return 401;
	}
	if (strncasecmp(authorization, "Bearer ", 7) != 0)
	{
		*why = "Authorization must be: Bearer <token>";
		return 401;
	}
	tok = authorization + 7;
	while (*tok == ' ')
		tok++;
	for (i = 0; i < ntokens; i++)
	{
		size_t		a = strlen(tokens[i].token);

		if (strlen(tok) == a && CRYPTO_memcmp(tok, tokens[i].token, a) == 0)
		{
			strcpy(role, tokens[i].role);
			*read_only = tokens[i].read_only;
			return 0;
		}
	}
	if (jwt_key && strchr(tok, '.'))
		return jwt_verify(tok, jwt_key, jwt_keylen, (long) time(NULL), role, exp, read_only, why);
	*why = "invalid token";
	return 401;
}
