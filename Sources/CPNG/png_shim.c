#include "CPNG.h"
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *buf; size_t len; } err_ctx;

static void on_error(png_structp png, png_const_charp msg) {
    err_ctx *ctx = (err_ctx *)png_get_error_ptr(png);
    if (ctx && ctx->buf && ctx->len) snprintf(ctx->buf, ctx->len, "%s", msg);
    png_longjmp(png, 1);
}
static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void set_err(char *err, size_t len, const char *msg) {
    if (err && len) snprintf(err, len, "%s", msg);
}

int tmf_png_read_info(const char *path, uint32_t *width, uint32_t *height, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { set_err(err, errlen, "cannot open file"); return 1; }
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(f); set_err(err, errlen, "not a PNG file (bad signature)"); return 2;
    }
    err_ctx ctx = { err, errlen };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { if (png) png_destroy_read_struct(&png, NULL, NULL); fclose(f); set_err(err, errlen, "out of memory"); return 3; }
    if (setjmp(png_jmpbuf(png))) { png_destroy_read_struct(&png, &info, NULL); fclose(f); return 4; }
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    *width = png_get_image_width(png, info);
    *height = png_get_image_height(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return 0;
}

int tmf_png_read(const char *path, uint64_t max_pixels, tmf_png_image *out, char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    FILE *f = fopen(path, "rb");
    if (!f) { set_err(err, errlen, "cannot open file"); return 1; }
    unsigned char sig[8];
    if (fread(sig, 1, 8, f) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(f); set_err(err, errlen, "not a PNG file (bad signature)"); return 2;
    }
    err_ctx ctx = { err, errlen };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { if (png) png_destroy_read_struct(&png, NULL, NULL); fclose(f); set_err(err, errlen, "out of memory"); return 3; }
    png_bytep *rows = NULL;
    void *volatile pixels = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows); free(pixels);
        png_destroy_read_struct(&png, &info, NULL); fclose(f);
        return 4;
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    int interlace = png_get_interlace_type(png, info);
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        snprintf(err, errlen, "image is %ux%u pixels, over the limit of %llu pixels", w, h, (unsigned long long)max_pixels);
        png_destroy_read_struct(&png, &info, NULL); fclose(f); return 5;
    }
    if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
    if (depth < 8) png_set_packing(png);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);
#endif
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    int outdepth = png_get_bit_depth(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    pixels = malloc(rowbytes * (size_t)h + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)(h ? h : 1));
    if (!pixels || !rows) {
        free(rows); free(pixels); png_destroy_read_struct(&png, &info, NULL); fclose(f);
        set_err(err, errlen, "out of memory"); return 3;
    }
    for (uint32_t y = 0; y < h; y++) rows[y] = (png_bytep)pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    out->width = w; out->height = h; out->channels = channels; out->bit_depth = outdepth;
    out->color_type = color; out->interlaced = interlace != PNG_INTERLACE_NONE;
    out->pixels = pixels;
    return 0;
}

void tmf_png_free(tmf_png_image *img) {
    if (img && img->pixels) { free(img->pixels); img->pixels = NULL; }
}

int tmf_png_write8(const char *path, const uint8_t *pixels, uint32_t width, uint32_t height,
                   int channels, char *err, size_t errlen) {
    int color;
    switch (channels) {
        case 1: color = PNG_COLOR_TYPE_GRAY; break;
        case 2: color = PNG_COLOR_TYPE_GRAY_ALPHA; break;
        case 3: color = PNG_COLOR_TYPE_RGB; break;
        case 4: color = PNG_COLOR_TYPE_RGB_ALPHA; break;
        default: set_err(err, errlen, "unsupported channel count"); return 1;
    }
    FILE *f = fopen(path, "wb");
    if (!f) { set_err(err, errlen, "cannot create file"); return 2; }
    err_ctx ctx = { err, errlen };
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { if (png) png_destroy_write_struct(&png, NULL); fclose(f); set_err(err, errlen, "out of memory"); return 3; }
    if (setjmp(png_jmpbuf(png))) { png_destroy_write_struct(&png, &info); fclose(f); return 4; }
    png_init_io(png, f);
    png_set_IHDR(png, info, width, height, 8, color, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (uint32_t y = 0; y < height; y++)
        png_write_row(png, (png_const_bytep)(pixels + (size_t)y * width * channels));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fflush(f) != 0) { fclose(f); set_err(err, errlen, "write failed"); return 5; }
    if (fclose(f) != 0) { set_err(err, errlen, "write failed"); return 5; }
    return 0;
}
