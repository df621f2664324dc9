/*
 * deliverd: the web console's files, served at /ui (ui.c).
 */
#ifndef DELIVERD_UI_H
#define DELIVERD_UI_H

#include "http.h"

/*
 * Read the console's files from dir into memory (at start; nothing is read
 * from the disk after).  A missing folder is no error: /ui then answers
 * 404 and the log says why.  0, or -1 after saying why on stderr.
 */
int			ui_init(const char *dir);
/* Answer GET /ui, /ui/ and /ui/NAME. */
enum MHD_Result ui_serve(struct MHD_Connection *c, request_t *rq);

#endif
