/*
 * page.h - the learner's live page: GET / serves learner/page.html, one
 * self-contained HTML file (inline CSS and JavaScript, no network besides
 * polling /status every second) showing what `rlhf top` shows: queue rates,
 * the actors and reward workers, the last step's phases, reward / KL /
 * held-out curves.
 *
 * page.html is turned into a C array at configure time (learner/CMakeLists.txt),
 * so the page is edited as HTML and the binary needs no file at run time.
 */
#ifndef RLHF_LEARNER_PAGE_H
#define RLHF_LEARNER_PAGE_H

#include "common/http.h"

/* The page's bytes (borrowed, static) and their count. */
extern const char page_html[];
extern const unsigned long page_html_len;

/* An http_handler_fn for "/": 200 text/html with the page; ud unused. */
void page_serve(const http_request_t *req, http_response_t *res, void *ud);

#endif
