/* api-util.h: small pieces the HTTP handlers share: body parsing, origins, error replies. */
#pragma once

#include <json-c/json.h>

#include "api.h"
#include "json-util.h"
#include "ops.h"

/* Parses the request body as a JSON object. Returns 1 with *ret, 0 when resp was filled with
 * a 400 (malformed), negative on allocation failure. */
int api_parse_body(const HttpRequest *req, HttpResponse *resp, json_object **ret);

/* Fills resp for a domain refusal r (ops.h) with err's message (or a default); returns 0. For
 * store failures (500) returns r itself so the route layer answers 500. */
int api_reply_error(HttpResponse *resp, int r, const OpError *err);

/* 400 with a JsonError's message; returns 0. */
int api_reply_json_error(HttpResponse *resp, const JsonError *err);

/* Fills resp with body (consumed) and the status. */
int api_reply(HttpResponse *resp, unsigned status, json_object *body);

/* An origin for an admin request or for a worker's ("worker:<id>", in buf). */
Origin api_origin(const HttpRequest *req, const char *actor);
Origin api_worker_origin(const HttpRequest *req, const char *worker_id, char *buf, size_t size);

/* Parses an optional non-negative integer query argument within [min, max]; -EINVAL if invalid. */
int api_query_int64(const HttpRequest *req, const char *key, int64_t min, int64_t max, int64_t *ret);
/* Parses an optional boolean query argument ("true"/"1"/"false"/"0"); -EINVAL if invalid. */
int api_query_bool(const HttpRequest *req, const char *key, bool *ret);
