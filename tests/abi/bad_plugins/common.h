/* Shared scaffolding for the deliberately broken test plugins: a minimal,
 * otherwise valid read-only format ("a 1 MiB disk of zeros"). Each plugin
 * file breaks exactly one ABI rule. */
#ifndef VDKIT_TEST_BAD_PLUGIN_COMMON_H
#define VDKIT_TEST_BAD_PLUGIN_COMMON_H

#include "vdkit/plugin.h"
#include <string.h>

#define STR(s)                                                                                                         \
    { s, sizeof(s) - 1 }

static uint32_t t_probe(vdkit_ctx *c, vdkit_store *m, vdkit_str n, uint32_t *score) {
    (void)c;
    (void)m;
    (void)n;
    *score = 0;
    return VDKIT_OK;
}
static int t_instance;
static uint32_t t_open(vdkit_ctx *c, vdkit_store *m, vdkit_str n, uint32_t f, void **img) {
    (void)c;
    (void)m;
    (void)n;
    (void)f;
    *img = &t_instance;
    return VDKIT_OK;
}
static uint32_t t_close(void *img, vdkit_ctx *c, uint8_t d) {
    (void)img;
    (void)c;
    (void)d;
    return VDKIT_OK;
}
static uint32_t t_info(void *img, vdkit_ctx *c, vdkit_image_info *out) {
    (void)img;
    (void)c;
    out->virtual_size = 1u << 20;
    return VDKIT_OK;
}
static uint32_t t_read(void *img, vdkit_ctx *c, uint64_t off, void *buf, uint64_t len, uint64_t *done) {
    (void)img;
    (void)c;
    (void)off;
    memset(buf, 0, (size_t)len);
    *done = len;
    return VDKIT_OK;
}

#endif
