/* client.h: the worker's HTTP client: libcurl's multi interface driven by sd-event (curl's sockets
 * become sd_event io sources, its timer an sd_event time source), so no request ever blocks the
 * loop that sends heartbeats. JSON in, JSON out, the X-API-Token header on every request. */
#pragma once

#include <json-c/json.h>
#include <stdbool.h>
#include <systemd/sd-event.h>

#include "time-util.h"

typedef struct Client Client;
typedef struct ClientRequest ClientRequest;

typedef struct ClientReply {
        long status;        /* HTTP status; 0 when no response arrived */
        int error;          /* 0, or negative errno for a transport failure (-ETIMEDOUT, -ECONNREFUSED, -EIO) */
        const char *error_text;
        json_object *body;  /* parsed JSON body, or NULL (borrowed: valid during the callback) */
        const char *raw;    /* raw body text, NUL-terminated, possibly empty */
        usec_t sent_boot;   /* CLOCK_BOOTTIME when the request was handed to curl (leases count on it) */
        usec_t sent_real;   /* CLOCK_REALTIME of the same moment */
        usec_t received_real; /* CLOCK_REALTIME when the answer (or the failure) was complete */
} ClientReply;

/* Called once per request unless it was cancelled. The request is freed after it returns. */
typedef void (*ClientCallback)(Client *c, const ClientReply *reply, void *userdata);

int client_new(sd_event *e, const char *base_url, Client **ret);
Client *client_free(Client *c);
/* The worker token is copied; it is sent only in the X-API-Token header, never logged. With
 * signed_tokens the header carries a token signed with it for worker_id and valid for lifetime
 * (common/signed-token.h), made anew when half of that has passed. */
int client_set_token(Client *c, const char *token, const char *worker_id, bool signed_tokens, usec_t lifetime);
/* TLS for https:// URLs: the server is verified against ca_file (PEM; the system's CAs when
 * NULL); cert_file and key_file (both or neither) are the client certificate for mTLS. */
int client_set_tls(Client *c, const char *ca_file, const char *cert_file, const char *key_file);
void client_set_timeout(Client *c, usec_t timeout);

/* Starts a request; body (may be NULL) is serialized at once and not kept. ret (optional) allows
 * client_request_cancel() until the callback ran. */
int client_request(Client *c, const char *method, const char *path, json_object *body, ClientCallback cb,
                   void *userdata, ClientRequest **ret);
/* Frees userdata with destroy if the request ends without its callback (cancelled, or the client
 * freed with it in flight); when the callback runs, the callback owns userdata. */
void client_request_set_destroy(ClientRequest *req, void (*destroy)(void *userdata));
/* Drops a request without calling its callback. */
void client_request_cancel(ClientRequest *req);
unsigned client_n_pending(Client *c);

/* Short description of a reply for logs: "HTTP 409: wrong assignment" or "timed out". */
const char *client_reply_describe(const ClientReply *reply, char *buf, size_t len);
/* Whether an answer is the control plane's own: a JSON object with a string `status` (2xx) or
 * `error` (otherwise), as the wire contract has them. Something on the way (a captive portal, a
 * proxy with no route) can answer 200 or 404 with a page of its own, which must neither settle a
 * result nor renew a lease. */
bool client_reply_from_control_plane(const ClientReply *reply);
/* client_reply_describe(), saying so when an answer is not the control plane's. */
const char *client_reply_describe_origin(const ClientReply *reply, char *buf, size_t len);
