// Private shim over libpng: libpng reports errors by longjmp, which Swift cannot catch,
// so every libpng call happens here behind a status code. Not API; use TMFImage.
#ifndef TMF_CPNG_H
#define TMF_CPNG_H
#include <stddef.h>
#include <stdint.h>

/// Decoded image: `channels` is 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) after palette
/// expansion (a palette with tRNS becomes RGBA, gray with tRNS becomes gray+alpha);
/// `bit_depth` is 8 or 16 (16-bit samples are stored native-endian as uint16).
typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;
    int bit_depth;
    int color_type;   // PNG colour type as stored in the file (before expansion)
    int interlaced;
    void *pixels;     // width*height*channels samples, freed by tmf_png_free
} tmf_png_image;

/// Reads the header only. Returns 0 on success, otherwise writes a message into err.
int tmf_png_read_info(const char *path, uint32_t *width, uint32_t *height, char *err, size_t errlen);

/// Decodes a whole PNG. Refuses (returns non-zero) images with more than max_pixels pixels
/// before allocating pixel memory. Returns 0 on success; on failure writes a message into err.
int tmf_png_read(const char *path, uint64_t max_pixels, tmf_png_image *out, char *err, size_t errlen);

void tmf_png_free(tmf_png_image *img);

/// Writes 8-bit RGB (channels 3) or gray (channels 1) or RGBA (4) pixels to path.
int tmf_png_write8(const char *path, const uint8_t *pixels, uint32_t width, uint32_t height,
                   int channels, char *err, size_t errlen);

#endif
