// Private C ABI shim over Debian's libsentencepiece (C++). Every C++ call happens in
// sentencepiece_shim.cpp behind a status code; no exception crosses this boundary.
// Not API: use TMFTokenizer's SentencePieceTokenizer and SentencePieceTrainer.
#ifndef TMF_CSENTENCEPIECE_H
#define TMF_CSENTENCEPIECE_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Opaque handle to a loaded sentencepiece::SentencePieceProcessor.
typedef struct tmf_sp_processor tmf_sp_processor;

/// Status codes returned by every fallible function. On failure a message is written to `err`.
enum {
    TMF_SP_OK = 0,
    TMF_SP_INVALID_ARGUMENT = 1,   // bad argument, corrupt model, bad training option
    TMF_SP_FAILED = 2,             // any other library error
    TMF_SP_EXCEPTION = 3,          // a C++ exception was caught (incl. out of memory)
};

/// Parses a serialized ModelProto (the bytes of a `tokenizer.model` file).
/// On success stores a new handle in `*out` (free it with tmf_sp_free).
int tmf_sp_load_from_bytes(const void *bytes, size_t len, tmf_sp_processor **out,
                           char *err, size_t errlen);

/// Frees a handle from tmf_sp_load_from_bytes (NULL is ignored).
void tmf_sp_free(tmf_sp_processor *sp);

/// Number of pieces in the model (ids 0 ..< size).
int tmf_sp_piece_size(const tmf_sp_processor *sp);
/// Special ids from the model; -1 when the model has none.
int tmf_sp_bos_id(const tmf_sp_processor *sp);
int tmf_sp_eos_id(const tmf_sp_processor *sp);
int tmf_sp_pad_id(const tmf_sp_processor *sp);
int tmf_sp_unk_id(const tmf_sp_processor *sp);

/// Piece flags for `id`: bit 0 unknown, bit 1 control, bit 2 unused, bit 3 byte.
/// Returns -1 for an out-of-range id.
int tmf_sp_piece_flags(const tmf_sp_processor *sp, int id);

/// The UTF-8 bytes of piece `id`, valid while `sp` lives; NULL for an out-of-range id.
const char *tmf_sp_id_to_piece(const tmf_sp_processor *sp, int id, size_t *len);

/// Id of `piece` (`len` bytes of UTF-8); the unknown id when the piece is not in the model.
int tmf_sp_piece_to_id(const tmf_sp_processor *sp, const char *piece, size_t len);

/// Encodes `len` bytes of UTF-8 `text` (no BOS/EOS). On success `*ids` is a malloc'ed array of
/// `*count` ids (may be NULL when count is 0), freed with tmf_sp_free_buffer.
int tmf_sp_encode(const tmf_sp_processor *sp, const char *text, size_t len,
                  int32_t **ids, size_t *count, char *err, size_t errlen);

/// Decodes `count` ids. On success `*text` is a malloc'ed UTF-8 buffer of `*len` bytes (not
/// NUL-terminated, may be NULL when len is 0), freed with tmf_sp_free_buffer.
int tmf_sp_decode(const tmf_sp_processor *sp, const int32_t *ids, size_t count,
                  char **text, size_t *len, char *err, size_t errlen);

/// Frees a buffer returned by tmf_sp_encode or tmf_sp_decode (NULL is ignored).
void tmf_sp_free_buffer(void *buffer);

/// Trains a model. `keys`/`values` are `n_options` trainer options in sentencepiece's
/// `--key=value` vocabulary without the dashes (e.g. "vocab_size" = "512"); `input` and
/// `model_prefix` must not be among them. The sentences come from `sentences`/`lengths`
/// (`n_sentences` UTF-8 strings). On success `*model` is a malloc'ed serialized ModelProto of
/// `*model_len` bytes, freed with tmf_sp_free_buffer. Library logging is silenced (minloglevel).
int tmf_sp_train(const char *const *keys, const char *const *values, size_t n_options,
                 const char *const *sentences, const size_t *lengths, size_t n_sentences,
                 char **model, size_t *model_len, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
