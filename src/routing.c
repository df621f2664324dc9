/*
 * routing.c
 *		Topic routing: deliver.publish, deliver.test_routing and the check
 *		of binding patterns (deliver.bind, deliver.unbind are SQL).
 *
 * A binding (deliver.binding) ties a pattern to a queue.  Patterns and
 * routing keys are words separated by dots; in a pattern, the word "*"
 * matches exactly one word and "#" zero or more (RabbitMQ topic exchange).
 *
 * Each backend keeps the bindings compiled into a trie of words (one child
 * per literal word, sorted, and a "*" and a "#" child), in a memory
 * context of its own.  It is built on the first publish and rebuilt when
 * the shared routing generation moved: a statement trigger on
 * deliver.binding (bind, unbind, and the cascade of drop_queue) moves it at
 * once and again when the transaction ends (commit or abort, and the abort
 * of a subtransaction), so a binding committed elsewhere is seen by the
 * next publish, and other catalog changes (segment switches) cost nothing
 * here.  A routing key
 * is matched by walking the trie as a nondeterministic automaton: the set
 * of nodes reached after each word, each node once, so the cost is bounded
 * by words * nodes whatever the patterns (no backtracking).
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "args.h"
#include "catalog.h"
#include "deliver.h"
#include "send.h"
#include "shmem.h"
#include "spi.h"

PG_FUNCTION_INFO_V1(deliver_check_pattern);
PG_FUNCTION_INFO_V1(deliver_bindings_changed);
PG_FUNCTION_INFO_V1(deliver_publish);
PG_FUNCTION_INFO_V1(deliver_test_routing);

/* longest pattern or routing key, in bytes */
#define ROUTING_MAX_BYTES	255

typedef struct RBinding
{
	char	   *pattern;
	char	  **words;
	int			nwords;
	int32		queue_id;
	char	   *queue_name;
} RBinding;

typedef struct RNode
{
	int32		nchildren;
	int32		maxchildren;
	char	  **words;			/* literal children, sorted by strcmp */
	int32	   *child;
	int32		star;			/* the "*" child, or -1 */
	int32		hash;			/* the "#" child, or -1 */
	bool		is_hash;		/* reached by a "#": takes any further word */
	uint32		mark;			/* last match step that reached it */
	int32		first;			/* its bindings: binds[first .. first + nbind) */
	int32		nbind;
} RNode;

static MemoryContext routing_cxt = NULL;
static bool routing_valid = false;
static uint32 routing_gen = 0;
static RBinding *binds = NULL;
static int	nbinds = 0;
static RNode *nodes = NULL;
static int32 nnodes = 0;
static int32 maxnodes = 0;
static int32 *set_a = NULL;		/* two node sets of nnodes each */
static int32 *set_b = NULL;
static uint32 mark_step = 0;

/* this transaction changed deliver.binding: move the generation at its end */
static bool routing_changed_here = false;
static bool routing_callbacks = false;

static void
routing_bump(void)
{
	if (deliver_shared != NULL)
		pg_atomic_fetch_add_u32(&deliver_shared->routing_gen, 1);
}

static void
routing_xact_callback(XactEvent event, void *arg)
{
	if (!routing_changed_here)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			/* COMMIT PREPARED would run where this callback is not noted */
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot prepare a transaction that changed deliver's bindings"),
					 errhint("Bind and unbind outside two-phase commit.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			routing_bump();
			routing_changed_here = false;
			break;
		default:
			break;
	}
}

static void
routing_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	/* the bindings read since are no more (the end of the top level moves it again) */
	if (routing_changed_here && event == SUBXACT_EVENT_ABORT_SUB)
		routing_bump();
}

/*
 * deliver._bindings_changed(): the statement trigger of deliver.binding.
 */
Datum
deliver_bindings_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("deliver._bindings_changed can only be called as a trigger")));
	if (!routing_callbacks)
	{
		RegisterXactCallback(routing_xact_callback, NULL);
		RegisterSubXactCallback(routing_subxact_callback, NULL);
		routing_callbacks = true;
	}
	routing_changed_here = true;
	routing_bump();				/* this transaction's next publish reads them anew */
	return PointerGetDatum(NULL);
}

/*
 * Check a pattern (wildcards allowed) or a routing key (none); returns its
 * words, cut in place in buf (a copy of s of len bytes, NUL-terminated),
 * in words[] (room for len / 2 + 1).  Errors with 22023.
 */
static int
routing_split(char *buf, int len, bool pattern, char **words)
{
	const char *what = pattern ? "pattern" : "routing key";
	int			n = 0;
	char	   *p;
	char	   *start;

	if (len > ROUTING_MAX_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", what, ROUTING_MAX_BYTES)));
	if (len == 0)
	{
		if (pattern)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("pattern must not be empty"),
					 errhint("Use \"#\" to match every routing key.")));
		return 0;				/* the routing key of no words */
	}
	start = buf;
	for (p = buf;; p++)
	{
		if (*p == '.' || *p == '\0')
		{
			bool		end = (*p == '\0');
			int			wlen = (int) (p - start);

			*p = '\0';
			if (wlen == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("%s has an empty word", what),
						 errhint("Words are separated by single dots, and a %s neither starts nor ends with a dot.",
								 what)));
			if (strchr(start, '*') || strchr(start, '#'))
			{
				if (!pattern)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("routing key must not contain wildcards"),
							 errhint("\"*\" and \"#\" are for binding patterns; a routing key names one topic, as in \"orders.created.eu\".")));
				if (wlen != 1)
					ereport(ERROR,
							(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
							 errmsg("pattern has a wildcard inside a word"),
							 errhint("\"*\" (one word) and \"#\" (zero or more words) stand alone between dots, as in \"orders.*.eu\" or \"logs.#\".")));
			}
			words[n++] = start;
			if (end)
				break;
			start = p + 1;
		}
	}
	return n;
}

/* a text argument as a NUL-terminated copy and its length */
static char *
routing_arg(text *t, int *len)
{
	*len = VARSIZE_ANY_EXHDR(t);
	if (*len > ROUTING_MAX_BYTES)
		return NULL;
	return text_to_cstring(t);
}

/* check a pattern or routing key argument; its words */
static int
routing_check_arg(FunctionCallInfo fcinfo, int argno, bool pattern, char ***words)
{
	int			len;
	char	   *buf;

	arg_not_null(fcinfo, argno, pattern ? "pattern" : "routing_key");
	buf = routing_arg(PG_GETARG_TEXT_PP(argno), &len);
	if (buf == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", pattern ? "pattern" : "routing key",
						ROUTING_MAX_BYTES)));
	*words = palloc(sizeof(char *) * (len / 2 + 1));
	return routing_split(buf, len, pattern, *words);
}

/*
 * deliver._check_pattern(pattern) returns void: 22023 unless the pattern
 * is valid (for bind and unbind).
 */
Datum
deliver_check_pattern(PG_FUNCTION_ARGS)
{
	char	  **words;

	(void) routing_check_arg(fcinfo, 0, true, &words);
	PG_RETURN_VOID();
}

/* order of bindings: by words (a node's bindings are adjacent), queue, pattern */
static int
binding_cmp(const void *a, const void *b)
{
	const RBinding *x = a;
	const RBinding *y = b;
	int			i;
	int			c;

	for (i = 0; i < x->nwords && i < y->nwords; i++)
		if ((c = strcmp(x->words[i], y->words[i])) != 0)
			return c;
	if (x->nwords != y->nwords)
		return x->nwords < y->nwords ? -1 : 1;
	if ((c = strcmp(x->queue_name, y->queue_name)) != 0)
		return c;
	return strcmp(x->pattern, y->pattern);
}

static int32
new_node(bool is_hash)
{
	RNode	   *n;

	if (nnodes == maxnodes)
	{
		maxnodes *= 2;
		nodes = repalloc(nodes, sizeof(RNode) * maxnodes);
	}
	n = &nodes[nnodes];
	memset(n, 0, sizeof(*n));
	n->star = n->hash = -1;
	n->is_hash = is_hash;
	return nnodes++;
}

/* the node of a binding's words, made as needed (bindings come sorted) */
static int32
insert_binding(const RBinding *b)
{
	int32		cur = 0;
	int			i;

	for (i = 0; i < b->nwords; i++)
	{
		const char *w = b->words[i];

		if (strcmp(w, "*") == 0)
		{
			if (nodes[cur].star < 0)
			{
				int32		c = new_node(false);

				nodes[cur].star = c;
			}
			cur = nodes[cur].star;
		}
		else if (strcmp(w, "#") == 0)
		{
			if (nodes[cur].hash < 0)
			{
				int32		c = new_node(true);

				nodes[cur].hash = c;
			}
			cur = nodes[cur].hash;
		}
		else
		{
			RNode	   *n = &nodes[cur];

			/* sorted input: a literal child is the last one or a new, greater one */
			if (n->nchildren == 0 || strcmp(n->words[n->nchildren - 1], w) != 0)
			{
				int32		c = new_node(false);

				n = &nodes[cur];	/* nodes may have moved */
				if (n->nchildren == n->maxchildren)
				{
					n->maxchildren = n->maxchildren ? n->maxchildren * 2 : 4;
					if (n->words)
					{
						n->words = repalloc(n->words, sizeof(char *) * n->maxchildren);
						n->child = repalloc(n->child, sizeof(int32) * n->maxchildren);
					}
					else
					{
						n->words = palloc(sizeof(char *) * n->maxchildren);
						n->child = palloc(sizeof(int32) * n->maxchildren);
					}
				}
				n->words[n->nchildren] = b->words[i];
				n->child[n->nchildren] = c;
				n->nchildren++;
			}
			cur = n->child[n->nchildren - 1];
		}
	}
	return cur;
}

/*
 * The compiled bindings, rebuilt when the catalog changed.  The caller is
 * connected to SPI.
 */
static void
routing_load(void)
{
	uint32		gen = pg_atomic_read_u32(&deliver_shared->routing_gen);
	MemoryContext old;
	int			rc;
	int			i;
	uint64		n;

	if (routing_valid && routing_gen == gen)
		return;
	routing_valid = false;
	if (routing_cxt)
		MemoryContextReset(routing_cxt);
	else
		routing_cxt = AllocSetContextCreate(TopMemoryContext, "deliver routing",
											ALLOCSET_DEFAULT_SIZES);

	/*
	 * Read in a snapshot taken after gen was: a change moves the generation
	 * once it is visible (at commit, after the commit is in the proc
	 * array: the transaction callbacks run then), so the bindings read are
	 * at least those of gen, whatever the
	 * transaction's own snapshot (an old one, under repeatable read).  The
	 * transaction's own uncommitted changes are seen too.
	 */
	PushActiveSnapshot(GetLatestSnapshot());
	rc = spi_run(catalog_owner(), "bindings",
				 "SELECT b.pattern, b.queue_id, q.queue_name "
				 "FROM deliver.binding b JOIN deliver.queue q USING (queue_id)",
				 0, NULL, NULL, NULL, true, 0);
	PopActiveSnapshot();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "deliver: binding lookup failed: %s", SPI_result_code_string(rc));
	n = SPI_processed;

	old = MemoryContextSwitchTo(routing_cxt);
	nbinds = (int) n;
	binds = palloc(sizeof(RBinding) * Max(nbinds, 1));
	for (i = 0; i < nbinds; i++)
	{
		HeapTuple	t = SPI_tuptable->vals[i];
		TupleDesc	d = SPI_tuptable->tupdesc;
		bool		isnull;
		char	   *buf;
		int			len;

		binds[i].pattern = TextDatumGetCString(SPI_getbinval(t, d, 1, &isnull));
		binds[i].queue_id = DatumGetInt32(SPI_getbinval(t, d, 2, &isnull));
		binds[i].queue_name = TextDatumGetCString(SPI_getbinval(t, d, 3, &isnull));
		len = strlen(binds[i].pattern);
		buf = pstrdup(binds[i].pattern);
		binds[i].words = palloc(sizeof(char *) * (len / 2 + 1));
		/* bind checked it; a row written otherwise errors here */
		binds[i].nwords = routing_split(buf, len, true, binds[i].words);
	}
	qsort(binds, nbinds, sizeof(RBinding), binding_cmp);

	maxnodes = 64;
	nnodes = 0;
	nodes = palloc(sizeof(RNode) * maxnodes);
	(void) new_node(false);		/* the root */
	for (i = 0; i < nbinds; i++)
	{
		int32		at = insert_binding(&binds[i]);

		if (nodes[at].nbind == 0)
			nodes[at].first = i;
		nodes[at].nbind++;
	}
	set_a = palloc(sizeof(int32) * nnodes);
	set_b = palloc(sizeof(int32) * nnodes);
	mark_step = 0;
	MemoryContextSwitchTo(old);

	routing_gen = gen;
	routing_valid = true;
}

/* add node c, and what "#" children reach without a word, to set */
static void
set_add(int32 c, int32 *set, int *cnt)
{
	while (c >= 0 && nodes[c].mark != mark_step)
	{
		nodes[c].mark = mark_step;
		set[(*cnt)++] = c;
		c = nodes[c].hash;
	}
}

/* the next match step's mark (all marks cleared when it wraps) */
static void
next_step(void)
{
	if (++mark_step == 0)
	{
		int32		i;

		for (i = 0; i < nnodes; i++)
			nodes[i].mark = 0;
		mark_step = 1;
	}
}

/* the literal child of node n for word w, or -1 */
static int32
find_child(const RNode *n, const char *w)
{
	int			lo = 0;
	int			hi = n->nchildren - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		int			c = strcmp(n->words[mid], w);

		if (c == 0)
			return n->child[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return -1;
}

/*
 * Match the words of a routing key: the bindings whose patterns match, as
 * indexes into binds[] (palloc'd in the caller's context), in binding
 * order; returns their number.
 */
static int
routing_match(char **words, int nwords, int **out)
{
	int32	   *cur = set_a;
	int32	   *next = set_b;
	int			ncur = 0;
	int			i;
	int			j;
	int			nout = 0;

	next_step();
	set_add(0, cur, &ncur);
	for (i = 0; i < nwords && ncur > 0; i++)
	{
		int			nnext = 0;
		int32	   *tmp;

		next_step();
		for (j = 0; j < ncur; j++)
		{
			RNode	   *n = &nodes[cur[j]];

			if (n->is_hash)
				set_add(cur[j], next, &nnext);
			if (n->star >= 0)
				set_add(n->star, next, &nnext);
			if (n->nchildren > 0)
				set_add(find_child(n, words[i]), next, &nnext);
		}
		tmp = cur;
		cur = next;
		next = tmp;
		ncur = nnext;
	}
	if (i < nwords)
		ncur = 0;				/* no node left before the last word */

	for (j = 0; j < ncur; j++)
		nout += nodes[cur[j]].nbind;
	*out = palloc(sizeof(int) * Max(nout, 1));
	nout = 0;
	for (j = 0; j < ncur; j++)
	{
		RNode	   *n = &nodes[cur[j]];
		int			k;

		for (k = 0; k < n->nbind; k++)
			(*out)[nout++] = n->first + k;
	}
	return nout;
}

/* by queue name, then pattern */
static int
match_cmp(const void *a, const void *b)
{
	const RBinding *x = &binds[*(const int *) a];
	const RBinding *y = &binds[*(const int *) b];
	int			c = strcmp(x->queue_name, y->queue_name);

	return c != 0 ? c : strcmp(x->pattern, y->pattern);
}

/*
 * deliver.test_routing(routing_key) returns table (queue_name, pattern):
 * the bindings a publish with this routing key would match.
 */
Datum
deliver_test_routing(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	  **words;
	int			nwords;
	int		   *m;
	int			n;
	int			i;
	MemoryContext caller = CurrentMemoryContext;

	deliver_check_preloaded();
	nwords = routing_check_arg(fcinfo, 0, false, &words);
	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	routing_load();
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		n = routing_match(words, nwords, &m);
		qsort(m, n, sizeof(int), match_cmp);
		for (i = 0; i < n; i++)
		{
			Datum		values[2];
			bool		nulls[2] = {false, false};

			values[0] = CStringGetTextDatum(binds[m[i]].queue_name);
			values[1] = CStringGetTextDatum(binds[m[i]].pattern);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return (Datum) 0;
}

/*
 * deliver.publish(routing_key, payload, headers, ordering_key,
 * idempotency_key, delay, mandatory, expires_at, priority) returns table (queue_name,
 * message_id): the message, sent once to each queue with a binding whose
 * pattern matches the routing key, in the caller's transaction.  The right
 * to send to every such queue (and that each takes the message) is checked
 * before anything is sent.  expires_at is taken as send takes it
 * (arg_expires_at): each copy has that deadline; priority likewise (every
 * matched queue must have priorities for one over 0).
 */
Datum
deliver_publish(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	  **words;
	int			nwords;
	int		   *m;
	int			n;
	int			nq = 0;
	int			i;
	char	  **names;
	int64	   *ids;
	bool		mandatory;
	SendOne		msg;
	MemoryContext caller = CurrentMemoryContext;

	deliver_check_primary();
	nwords = routing_check_arg(fcinfo, 0, false, &words);
	arg_not_null(fcinfo, 1, "payload");
	arg_not_null(fcinfo, 6, "mandatory");
	mandatory = PG_GETARG_BOOL(6);
	memset(&msg, 0, sizeof(msg));
	msg.payload = PG_GETARG_DATUM(1);
	msg.headers_null = PG_ARGISNULL(2);
	msg.headers = msg.headers_null ? (Datum) 0 : PG_GETARG_DATUM(2);
	msg.ordering_key_null = PG_ARGISNULL(3);
	msg.ordering_key = msg.ordering_key_null ? (Datum) 0 : PG_GETARG_DATUM(3);
	msg.idempotency_key_null = PG_ARGISNULL(4);
	msg.idempotency_key = msg.idempotency_key_null ? (Datum) 0 : PG_GETARG_DATUM(4);
	msg.delay_ms = arg_interval_ms(fcinfo, 5, 0, 0, DELIVER_MAX_DELAY_MS, "delay",
								   "0 and " DELIVER_MAX_DELAY_TEXT);
	msg.expires_at = arg_expires_at(fcinfo, 7);
	msg.priority = arg_priority(fcinfo, 8);
	InitMaterializedSRF(fcinfo, 0);

	SPI_connect();
	routing_load();
	/* the queues, each once, by name (in the caller's context: past SPI_finish) */
	{
		MemoryContext old = MemoryContextSwitchTo(caller);

		n = routing_match(words, nwords, &m);
		qsort(m, n, sizeof(int), match_cmp);
		names = palloc(sizeof(char *) * Max(n, 1));
		ids = palloc(sizeof(int64) * Max(n, 1));
		for (i = 0; i < n; i++)
			if (nq == 0 || strcmp(names[nq - 1], binds[m[i]].queue_name) != 0)
				names[nq++] = pstrdup(binds[m[i]].queue_name);
		MemoryContextSwitchTo(old);
	}
	if (nq == 0 && mandatory)
	{
		int			len;
		char	   *key = routing_arg(PG_GETARG_TEXT_PP(0), &len);

		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("no queue is bound to routing key \"%s\"", clip_text(key, ERROR_QUOTE_BYTES)),
				 errhint("Bind a queue with deliver.bind(), or publish with mandatory => false.")));
	}

	/*
	 * Every check first, so that a refusal sends nothing; the queue cache
	 * may be reloaded by any lookup, so each is looked up again to send.
	 */
	for (i = 0; i < nq; i++)
		send_check_one(queue_lookup(cstring_to_text(names[i])), &msg);
	for (i = 0; i < nq; i++)
		ids[i] = send_one(queue_lookup(cstring_to_text(names[i])), &msg);
	SPI_finish();

	for (i = 0; i < nq; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(names[i]);
		values[1] = Int64GetDatum(ids[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
