/* http-api.h: the HTTP API's route table and the authentication in front of it. */
#pragma once

#include "control.h"
#include "http-server.h"

/* Longest X-API-Token looked at; longer ones are refused without comparing. */
#define HTTP_API_TOKEN_MAX 4096

/* The HttpDispatch of the control plane (userdata: Control *): finds the route (404, 405 with
 * Allow), checks the token against the route's role (401, audited), then X-Request-ID (400), then
 * runs the handler of api.h. A handler's failure becomes a 500. Always fills resp. */
int http_api_dispatch(void *userdata, const HttpRequest *req, HttpResponse *resp);
/* The HttpAdmitBody of the control plane: a body is kept only for a route that exists and is
 * public or whose token (looked at alone) is valid for it. */
bool http_api_admit_body(void *userdata, const HttpRequest *req);
