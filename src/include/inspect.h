/*
 * inspect.h
 *		Deleting single messages (inspect.c).
 */
#ifndef DELIVER_INSPECT_H
#define DELIVER_INSPECT_H

#include "deliver.h"

#endif							/* DELIVER_INSPECT_H */
