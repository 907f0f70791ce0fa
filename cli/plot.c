/*
 * plot.c - line charts of metrics.jsonl with cairo: one panel per metric,
 * stacked, sharing the step axis. Small on purpose: no legends beyond the
 * panel title, no log scales.
 */
#include "cli/plot.h"

#include <cairo.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PLOT_MAX_PANELS 6

static const char *const default_keys[] = {"reward_mean", "heldout_score", "kl", "entropy", "loss", NULL};

typedef struct {
    const char *key;
    double *x, *y;
    int n, cap;
} series_t;

static void series_push(series_t *s, double x, double y) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 256;
        s->x = realloc(s->x, sizeof(double) * (size_t)s->cap);
        s->y = realloc(s->y, sizeof(double) * (size_t)s->cap);
    }
    s->x[s->n] = x, s->y[s->n] = y;
    s->n++;
}

static void draw_panel(cairo_t *cr, const series_t *s, double x0, double y0, double w, double h, double xmin,
                       double xmax) {
    double ymin = INFINITY, ymax = -INFINITY;
    for (int i = 0; i < s->n; i++) ymin = fmin(ymin, s->y[i]), ymax = fmax(ymax, s->y[i]);
    if (ymax - ymin < 1e-12) ymin -= 0.5, ymax += 0.5;
    double pad = 0.05 * (ymax - ymin);
    ymin -= pad, ymax += pad;
    double L = x0 + 70, R = x0 + w - 20, T = y0 + 28, B = y0 + h - 28;
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, x0, y0, w, h);
    cairo_fill(cr);
    cairo_set_source_rgb(cr, 0.85, 0.85, 0.85);
    cairo_set_line_width(cr, 1);
    for (int g = 0; g <= 4; g++) { /* horizontal grid */
        double gy = B - (B - T) * g / 4.0;
        cairo_move_to(cr, L, gy), cairo_line_to(cr, R, gy);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, L, T, R - L, B - T);
    cairo_stroke(cr);
    char buf[64];
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 14);
    cairo_move_to(cr, L, y0 + 18);
    cairo_show_text(cr, s->key);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11);
    for (int g = 0; g <= 4; g += 2) {
        double v = ymin + (ymax - ymin) * g / 4.0;
        snprintf(buf, sizeof buf, "%.3g", v);
        cairo_move_to(cr, x0 + 8, B - (B - T) * g / 4.0 + 4);
        cairo_show_text(cr, buf);
    }
    snprintf(buf, sizeof buf, "step %.0f", xmin);
    cairo_move_to(cr, L, B + 16);
    cairo_show_text(cr, buf);
    snprintf(buf, sizeof buf, "%.0f", xmax);
    cairo_move_to(cr, R - 30, B + 16);
    cairo_show_text(cr, buf);
    snprintf(buf, sizeof buf, "last %.4g", s->y[s->n - 1]);
    cairo_move_to(cr, R - 110, y0 + 18);
    cairo_show_text(cr, buf);
    cairo_set_source_rgb(cr, 0.12, 0.38, 0.75);
    cairo_set_line_width(cr, 2);
    double span = xmax - xmin > 0 ? xmax - xmin : 1;
    for (int i = 0; i < s->n; i++) {
        double px = L + (R - L) * (s->x[i] - xmin) / span;
        double py = B - (B - T) * (s->y[i] - ymin) / (ymax - ymin);
        if (i == 0)
            cairo_move_to(cr, px, py);
        else
            cairo_line_to(cr, px, py);
    }
    if (s->n == 1) cairo_arc(cr, L, B - (B - T) * (s->y[0] - ymin) / (ymax - ymin), 3, 0, 2 * M_PI);
    cairo_stroke(cr);
}

int plot_metrics(const char *jsonl_path, const char *png_path, const char *const *keys, char *err, size_t errlen) {
    if (!keys) keys = default_keys;
    FILE *f = fopen(jsonl_path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open", jsonl_path);
        return -1;
    }
    series_t s[PLOT_MAX_PANELS] = {0};
    int ns = 0;
    for (; keys[ns] && ns < PLOT_MAX_PANELS; ns++) s[ns].key = keys[ns];
    char *line = NULL;
    size_t cap = 0;
    double xmin = INFINITY, xmax = -INFINITY;
    while (getline(&line, &cap, f) > 0) {
        json_t *o = json_loads(line, 0, NULL);
        if (!o) continue; /* a torn last line of a live run: skip */
        json_t *st = json_object_get(o, "step");
        if (json_is_number(st)) {
            double x = json_number_value(st);
            for (int k = 0; k < ns; k++) {
                json_t *v = json_object_get(o, s[k].key);
                if (json_is_number(v) && isfinite(json_number_value(v))) {
                    series_push(&s[k], x, json_number_value(v));
                    xmin = fmin(xmin, x), xmax = fmax(xmax, x);
                }
            }
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    /* the held-out score before any RL step (summary.json's eval_before, at
     * step 0): without it the curve would hide the lift that matters most */
    char sum_path[4096];
    const char *slash = strrchr(jsonl_path, '/');
    snprintf(sum_path, sizeof sum_path, "%.*s%ssummary.json", slash ? (int)(slash - jsonl_path) : 0, jsonl_path,
             slash ? "/" : "");
    json_t *sum = json_load_file(sum_path, 0, NULL);
    json_t *eb = sum ? json_object_get(sum, "eval_before") : NULL;
    for (int k = 0; k < ns && json_is_number(eb) && isfinite(json_number_value(eb)); k++) {
        if (strcmp(s[k].key, "heldout_score") != 0) continue;
        series_push(&s[k], 0.0, json_number_value(eb)); // then rotate it to the front
        memmove(s[k].x + 1, s[k].x, sizeof(double) * (s[k].n - 1));
        memmove(s[k].y + 1, s[k].y, sizeof(double) * (s[k].n - 1));
        s[k].x[0] = 0.0, s[k].y[0] = json_number_value(eb);
        xmin = fmin(xmin, 0.0), xmax = fmax(xmax, 0.0);
    }
    json_decref(sum);
    int panels = 0;
    for (int k = 0; k < ns; k++) panels += s[k].n > 0;
    int rc = -1;
    if (panels == 0) {
        snprintf(err, errlen, "%s: no rows with a step and any of the plotted fields", jsonl_path);
        goto done;
    }
    const int W = 900, PH = 220;
    cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W, PH * panels);
    cairo_t *cr = cairo_create(surf);
    int p = 0;
    for (int k = 0; k < ns; k++)
        if (s[k].n > 0) draw_panel(cr, &s[k], 0, (double)PH * p++, W, PH, xmin, xmax);
    cairo_destroy(cr);
    cairo_status_t cs = cairo_surface_write_to_png(surf, png_path);
    cairo_surface_destroy(surf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        snprintf(err, errlen, "%s: %s", png_path, cairo_status_to_string(cs));
        goto done;
    }
    rc = 0;
done:
    for (int k = 0; k < ns; k++) free(s[k].x), free(s[k].y);
    return rc;
}
