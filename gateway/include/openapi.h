/*
 * deliverd: the OpenAPI document of the gateway, served at /openapi.json
 * (openapi.c, made from openapi.json by the Makefile).
 */
#ifndef DELIVERD_OPENAPI_H
#define DELIVERD_OPENAPI_H

extern const char openapi_json[];

#endif
