#include "CPNG.h"
#include <png.h>
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *buf;
    size_t len;
    FILE *file;
    int eof;      // set when a read came up short: the file is truncated
} err_ctx;

static void on_error(png_structp png, png_const_charp msg) {
    err_ctx *ctx = (err_ctx *)png_get_error_ptr(png);
    if (ctx && ctx->buf && ctx->len) snprintf(ctx->buf, ctx->len, "%s", msg);
    png_longjmp(png, 1);
}
static void on_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

static void set_err(char *err, size_t len, const char *msg) {
    if (err && len) snprintf(err, len, "%s", msg);
}

// Reads through stdio and remembers a short read, so a truncated file is told apart
// from corrupt data.
static void read_data(png_structp png, png_bytep data, size_t length) {
    err_ctx *ctx = (err_ctx *)png_get_error_ptr(png);
    size_t got = fread(data, 1, length, ctx->file);
    if (got != length) {
        ctx->eof = 1;
        png_error(png, "unexpected end of file");
    }
}

// Opens the file and checks the signature. Returns TMF_PNG_OK with *fp set, or a status.
static int open_png(const char *path, FILE **fp, int *sys_errno, char *err, size_t errlen) {
    *fp = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (sys_errno) *sys_errno = errno;
        set_err(err, errlen, strerror(errno));
        return TMF_PNG_OPEN_FAILED;
    }
    static const unsigned char signature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    unsigned char sig[8];
    size_t got = fread(sig, 1, 8, f);
    if (got == 0) {
        int is_dir_or_error = ferror(f);
        if (sys_errno) *sys_errno = is_dir_or_error ? errno : 0;
        fclose(f);
        if (is_dir_or_error) { set_err(err, errlen, strerror(errno)); return TMF_PNG_OPEN_FAILED; }
        set_err(err, errlen, "the file is empty (0 bytes)");
        return TMF_PNG_EMPTY;
    }
    if (memcmp(sig, signature, got) != 0) {
        fclose(f);
        set_err(err, errlen, "not a PNG file (bad signature)");
        return TMF_PNG_NOT_PNG;
    }
    if (got < 8) {
        fclose(f);
        set_err(err, errlen, "the file ends inside the PNG signature");
        return TMF_PNG_TRUNCATED;
    }
    *fp = f;
    return TMF_PNG_OK;
}

int tmf_png_read_info(const char *path, uint32_t *width, uint32_t *height, int *sys_errno,
                      char *err, size_t errlen) {
    FILE *f;
    int status = open_png(path, &f, sys_errno, err, errlen);
    if (status != TMF_PNG_OK) return status;
    err_ctx ctx = { err, errlen, f, 0 };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { if (png) png_destroy_read_struct(&png, NULL, NULL); fclose(f); set_err(err, errlen, "out of memory"); return TMF_PNG_NO_MEMORY; }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL); fclose(f);
        return ctx.eof ? TMF_PNG_TRUNCATED : TMF_PNG_CORRUPT;
    }
    png_set_read_fn(png, &ctx, read_data);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    *width = png_get_image_width(png, info);
    *height = png_get_image_height(png, info);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return TMF_PNG_OK;
}

int tmf_png_read(const char *path, uint64_t max_pixels, tmf_png_image *out, int *sys_errno,
                 char *err, size_t errlen) {
    memset(out, 0, sizeof(*out));
    FILE *f;
    int status = open_png(path, &f, sys_errno, err, errlen);
    if (status != TMF_PNG_OK) return status;
    err_ctx ctx = { err, errlen, f, 0 };
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) { if (png) png_destroy_read_struct(&png, NULL, NULL); fclose(f); set_err(err, errlen, "out of memory"); return TMF_PNG_NO_MEMORY; }
    png_bytep *volatile rows = NULL;
    void *volatile pixels = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(rows); free(pixels);
        png_destroy_read_struct(&png, &info, NULL); fclose(f);
        return ctx.eof ? TMF_PNG_TRUNCATED : TMF_PNG_CORRUPT;
    }
    png_set_read_fn(png, &ctx, read_data);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);
    png_read_info(png, info);
    uint32_t w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int color = png_get_color_type(png, info);
    int depth = png_get_bit_depth(png, info);
    int interlace = png_get_interlace_type(png, info);
    out->width = w; out->height = h;
    if ((uint64_t)w * (uint64_t)h > max_pixels) {
        snprintf(err, errlen, "image is %ux%u pixels, over the limit of %llu pixels", w, h, (unsigned long long)max_pixels);
        png_destroy_read_struct(&png, &info, NULL); fclose(f); return TMF_PNG_TOO_LARGE;
    }
    // Palette and transparency as stored; colour conversion happens in Swift.
    for (int i = 0; i < 256; i++) out->palette_alpha[i] = 255;
    if (color == PNG_COLOR_TYPE_PALETTE) {
        png_colorp pal = NULL; int npal = 0;
        if (png_get_PLTE(png, info, &pal, &npal) & PNG_INFO_PLTE) {
            if (npal > 256) npal = 256;
            for (int i = 0; i < npal; i++) {
                out->palette[3 * i] = pal[i].red;
                out->palette[3 * i + 1] = pal[i].green;
                out->palette[3 * i + 2] = pal[i].blue;
            }
            out->num_palette = npal;
        }
    }
    if (png_get_valid(png, info, PNG_INFO_tRNS)) {
        png_bytep trans = NULL; int ntrans = 0; png_color_16p tcolor = NULL;
        png_get_tRNS(png, info, &trans, &ntrans, &tcolor);
        if (color == PNG_COLOR_TYPE_PALETTE) {
            if (ntrans > 256) ntrans = 256;
            for (int i = 0; i < ntrans && trans; i++) out->palette_alpha[i] = trans[i];
            out->num_trans = ntrans;
        } else if (tcolor) {
            out->has_trns_color = 1;
            out->trns_gray = tcolor->gray;
            out->trns_red = tcolor->red;
            out->trns_green = tcolor->green;
            out->trns_blue = tcolor->blue;
        }
    }
    if (depth < 8) png_set_packing(png);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (depth == 16) png_set_swap(png);
#endif
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int channels = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    int sample_bytes = depth == 16 ? 2 : 1;
    if (rowbytes != (size_t)w * (size_t)channels * (size_t)sample_bytes) {
        png_destroy_read_struct(&png, &info, NULL); fclose(f);
        set_err(err, errlen, "unexpected row layout"); return TMF_PNG_CORRUPT;
    }
    pixels = malloc(rowbytes * (size_t)h + 1);
    rows = (png_bytep *)malloc(sizeof(png_bytep) * (size_t)(h ? h : 1));
    if (!pixels || !rows) {
        free(rows); free(pixels); png_destroy_read_struct(&png, &info, NULL); fclose(f);
        set_err(err, errlen, "out of memory"); return TMF_PNG_NO_MEMORY;
    }
    for (uint32_t y = 0; y < h; y++) rows[y] = (png_bytep)pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    out->channels = channels; out->bit_depth = depth; out->sample_bytes = sample_bytes;
    out->color_type = color; out->interlaced = interlace != PNG_INTERLACE_NONE;
    out->pixels = pixels;
    return TMF_PNG_OK;
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
