/*
 * plot.h - PNG curves of a run's metrics.jsonl (cairo).
 */
#ifndef RLHF_CLI_PLOT_H
#define RLHF_CLI_PLOT_H

#include <stddef.h>

/* Plot the numeric fields of metrics.jsonl that are in `keys` (NULL: a
 * built-in list: reward, KL, held-out score, entropy, loss) against "step",
 * one panel per field present, into a PNG. Returns 0, or -1 with one line
 * in err (file missing, no numeric rows, cairo failure). */
int plot_metrics(const char *jsonl_path, const char *png_path, const char *const *keys, char *err, size_t errlen);

#endif
