/*
 * deliverd: bearer tokens (HS256 JWTs, a token file) to Postgres roles
 * (auth.c).
 */
#ifndef DELIVERD_AUTH_H
#define DELIVERD_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* the longest role name Postgres keeps (NAMEDATALEN - 1) */
#define ROLE_MAX_LEN 63

int			auth_init(const char *jwt_secret, const char *token_file, const char *anon_role);
/* none, public, current_user, session_user, current_role (any case) */
bool		auth_role_reserved(const char *role);
bool		auth_configured(void);
/* Whether an Authorization header value (may be NULL) is "Bearer <secret>" (constant time). */
bool		auth_bearer_is(const char *authorization, const char *secret);
/*
 * Map an Authorization header value (may be NULL) to a role.  Returns 0 and
 * fills role, exp (the token's expiry in seconds since the epoch, 0 for
 * none) and read_only (the token may only read), or 401 and sets *why.
 */
int			auth_request(const char *authorization, char *role, double *exp, bool *read_only,
						 const char **why);
/*
 * Verify an HS256 JWT; 0 and role, exp and read_only (its claim) filled,
 * else 401 with *why.  (fuzzed)
 */
int			jwt_verify(const char *token, const unsigned char *key, size_t keylen,
					   long now, char *role, double *exp, bool *read_only, const char **why);

#endif
