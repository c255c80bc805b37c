// Private shim over libpng: libpng reports errors by longjmp, which Swift cannot catch,
// so every libpng call happens here behind a status code. Not API; use TMFImage.
#ifndef TMF_CPNG_H
#define TMF_CPNG_H
#include <stddef.h>
#include <stdint.h>

/// Status codes of the read functions.
enum {
    TMF_PNG_OK = 0,
    TMF_PNG_OPEN_FAILED = 1,   // fopen failed; `sys_errno` holds errno
    TMF_PNG_NOT_PNG = 2,       // the first 8 bytes are not the PNG signature
    TMF_PNG_NO_MEMORY = 3,
    TMF_PNG_CORRUPT = 4,       // libpng reported an error; message in err
    TMF_PNG_TOO_LARGE = 5,     // width*height over max_pixels (width/height are filled in)
    TMF_PNG_TRUNCATED = 6,     // the file ended before the image data did
    TMF_PNG_EMPTY = 7,         // zero-byte file
};

/// Decoded image with samples as stored in the file (no colour conversion):
/// `channels` is 1 (gray or palette index), 2 (gray+alpha), 3 (RGB) or 4 (RGBA).
/// Samples of 1/2/4-bit images are unpacked to one byte each but not rescaled
/// (a 2-bit sample is 0...3). 16-bit samples are stored native-endian as uint16.
typedef struct {
    uint32_t width;
    uint32_t height;
    int channels;
    int bit_depth;        // bit depth in the file: 1, 2, 4, 8 or 16
    int sample_bytes;     // 1 or 2 bytes per stored sample
    int color_type;       // PNG colour type: 0 gray, 2 RGB, 3 palette, 4 gray+alpha, 6 RGBA
    int interlaced;
    int num_palette;      // palette entries present in PLTE (0 without a palette)
    uint8_t palette[256 * 3];       // RGB of each entry; entries past num_palette are 0
    int num_trans;                  // tRNS entries for a palette image (alpha of entries 0..num_trans-1)
    uint8_t palette_alpha[256];     // alpha per palette entry; 255 past num_trans
    int has_trns_color;             // gray/RGB image with a tRNS chunk
    uint16_t trns_gray, trns_red, trns_green, trns_blue;  // tRNS values as stored in the file
    void *pixels;         // height rows of width*channels samples, freed by tmf_png_free
} tmf_png_image;

/// Reads the header only. Returns TMF_PNG_OK or a status; on failure writes a message into err.
int tmf_png_read_info(const char *path, uint32_t *width, uint32_t *height, int *sys_errno,
                      char *err, size_t errlen);

/// Decodes a whole PNG. Refuses images with more than max_pixels pixels (TMF_PNG_TOO_LARGE)
/// before allocating pixel memory. Returns TMF_PNG_OK or a status; on failure writes a message
/// into err.
int tmf_png_read(const char *path, uint64_t max_pixels, tmf_png_image *out, int *sys_errno,
                 char *err, size_t errlen);

void tmf_png_free(tmf_png_image *img);

/// Writes 8-bit RGB (channels 3) or gray (channels 1) or RGBA (4) pixels to path.
int tmf_png_write8(const char *path, const uint8_t *pixels, uint32_t width, uint32_t height,
                   int channels, char *err, size_t errlen);

#endif
