/* page.c - serves the live page (see page.h); the bytes are generated from page.html. */
#include "learner/page.h"

void page_serve(const http_request_t *req, http_response_t *res, void *ud) {
    (void)req;
    (void)ud;
    http_response_set(res, 200, "text/html; charset=utf-8", page_html, page_html_len);
}
