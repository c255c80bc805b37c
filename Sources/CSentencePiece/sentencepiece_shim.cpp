// C ABI over libsentencepiece. Every entry point catches all C++ exceptions.
#include "CSentencePiece.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

// Exported by libsentencepiece but not declared in the installed headers.
namespace sentencepiece {
namespace logging {
void SetMinLogLevel(int v);
}  // namespace logging
}  // namespace sentencepiece

struct tmf_sp_processor {
    sentencepiece::SentencePieceProcessor sp;
};

namespace {

void set_err(char *err, size_t len, const std::string &msg) {
    if (err && len) std::snprintf(err, len, "%s", msg.c_str());
}

int from_status(const sentencepiece::util::Status &st, char *err, size_t errlen) {
    if (st.ok()) return TMF_SP_OK;
    set_err(err, errlen, st.ToString());
    return st.code() == sentencepiece::util::StatusCode::kInvalidArgument ? TMF_SP_INVALID_ARGUMENT
                                                                          : TMF_SP_FAILED;
}

template <typename F>
int guarded(char *err, size_t errlen, F &&body) {
    try {
        return body();
    } catch (const std::bad_alloc &) {
        set_err(err, errlen, "out of memory");
    } catch (const std::exception &e) {
        set_err(err, errlen, std::string("sentencepiece raised: ") + e.what());
    } catch (...) {
        set_err(err, errlen, "sentencepiece raised an unknown C++ exception");
    }
    return TMF_SP_EXCEPTION;
}

// Sentences handed over from Swift, read without copying them all up front.
class ArrayIterator : public sentencepiece::SentenceIterator {
public:
    ArrayIterator(const char *const *s, const size_t *l, size_t n) : s_(s), l_(l), n_(n) { load(); }
    bool done() const override { return i_ >= n_; }
    void Next() override { ++i_; load(); }
    const std::string &value() const override { return value_; }
    sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

private:
    void load() {
        if (i_ < n_) value_.assign(s_[i_], l_[i_]);
    }
    const char *const *s_;
    const size_t *l_;
    size_t n_;
    size_t i_ = 0;
    std::string value_;
};

}  // namespace

extern "C" {

int tmf_sp_load_from_bytes(const void *bytes, size_t len, tmf_sp_processor **out, char *err,
                           size_t errlen) {
    if (!out) return TMF_SP_INVALID_ARGUMENT;
    *out = nullptr;
    return guarded(err, errlen, [&]() -> int {
        // Owned until handed over, so that an exception from the library frees it too.
        std::unique_ptr<tmf_sp_processor> p(new tmf_sp_processor());
        auto st = p->sp.LoadFromSerializedProto(
            std::string_view(static_cast<const char *>(bytes), bytes ? len : 0));
        if (!st.ok()) return from_status(st, err, errlen);
        if (p->sp.GetPieceSize() <= 0) {
            set_err(err, errlen, "model has no pieces");
            return TMF_SP_INVALID_ARGUMENT;
        }
        *out = p.release();
        return TMF_SP_OK;
    });
}

void tmf_sp_free(tmf_sp_processor *sp) {
    try {
        delete sp;
    } catch (...) {
    }
}

int tmf_sp_piece_size(const tmf_sp_processor *sp) { return sp ? sp->sp.GetPieceSize() : 0; }
int tmf_sp_bos_id(const tmf_sp_processor *sp) { return sp ? sp->sp.bos_id() : -1; }
int tmf_sp_eos_id(const tmf_sp_processor *sp) { return sp ? sp->sp.eos_id() : -1; }
int tmf_sp_pad_id(const tmf_sp_processor *sp) { return sp ? sp->sp.pad_id() : -1; }
int tmf_sp_unk_id(const tmf_sp_processor *sp) { return sp ? sp->sp.unk_id() : -1; }

int tmf_sp_piece_flags(const tmf_sp_processor *sp, int id) {
    if (!sp || id < 0 || id >= sp->sp.GetPieceSize()) return -1;
    try {
        return (sp->sp.IsUnknown(id) ? 1 : 0) | (sp->sp.IsControl(id) ? 2 : 0) |
               (sp->sp.IsUnused(id) ? 4 : 0) | (sp->sp.IsByte(id) ? 8 : 0);
    } catch (...) {
        return -1;
    }
}

const char *tmf_sp_id_to_piece(const tmf_sp_processor *sp, int id, size_t *len) {
    if (!sp || id < 0 || id >= sp->sp.GetPieceSize()) return nullptr;
    try {
        const std::string &piece = sp->sp.IdToPiece(id);
        if (len) *len = piece.size();
        return piece.data();
    } catch (...) {
        return nullptr;
    }
}

int tmf_sp_piece_to_id(const tmf_sp_processor *sp, const char *piece, size_t len) {
    if (!sp) return -1;
    try {
        return sp->sp.PieceToId(std::string_view(piece ? piece : "", piece ? len : 0));
    } catch (...) {
        return sp->sp.unk_id();
    }
}

int tmf_sp_encode(const tmf_sp_processor *sp, const char *text, size_t len, int32_t **ids,
                  size_t *count, char *err, size_t errlen) {
    if (!sp || !ids || !count) return TMF_SP_INVALID_ARGUMENT;
    *ids = nullptr;
    *count = 0;
    return guarded(err, errlen, [&]() -> int {
        std::vector<int> out;
        auto st = sp->sp.Encode(std::string_view(text ? text : "", text ? len : 0), &out);
        if (!st.ok()) return from_status(st, err, errlen);
        if (out.empty()) return TMF_SP_OK;
        auto *buf = static_cast<int32_t *>(std::malloc(out.size() * sizeof(int32_t)));
        if (!buf) throw std::bad_alloc();
        for (size_t i = 0; i < out.size(); ++i) buf[i] = static_cast<int32_t>(out[i]);
        *ids = buf;
        *count = out.size();
        return TMF_SP_OK;
    });
}

int tmf_sp_decode(const tmf_sp_processor *sp, const int32_t *ids, size_t count, char **text,
                  size_t *len, char *err, size_t errlen) {
    if (!sp || !text || !len) return TMF_SP_INVALID_ARGUMENT;
    *text = nullptr;
    *len = 0;
    return guarded(err, errlen, [&]() -> int {
        const int n = sp->sp.GetPieceSize();
        std::vector<int> in(count);
        for (size_t i = 0; i < count; ++i) {
            if (ids[i] < 0 || ids[i] >= n) {
                set_err(err, errlen, "id " + std::to_string(ids[i]) + " is out of range 0..<" +
                                         std::to_string(n));
                return TMF_SP_INVALID_ARGUMENT;
            }
            in[i] = ids[i];
        }
        std::string out;
        auto st = sp->sp.Decode(in, &out);
        if (!st.ok()) return from_status(st, err, errlen);
        if (out.empty()) return TMF_SP_OK;
        auto *buf = static_cast<char *>(std::malloc(out.size()));
        if (!buf) throw std::bad_alloc();
        std::memcpy(buf, out.data(), out.size());
        *text = buf;
        *len = out.size();
        return TMF_SP_OK;
    });
}

void tmf_sp_free_buffer(void *buffer) { std::free(buffer); }

int tmf_sp_train(const char *const *keys, const char *const *values, size_t n_options,
                 const char *const *sentences, const size_t *lengths, size_t n_sentences,
                 char **model, size_t *model_len, char *err, size_t errlen) {
    if (!model || !model_len) return TMF_SP_INVALID_ARGUMENT;
    *model = nullptr;
    *model_len = 0;
    return guarded(err, errlen, [&]() -> int {
        std::unordered_map<std::string, std::string> kwargs;
        for (size_t i = 0; i < n_options; ++i) {
            std::string key = keys[i];
            if (key == "input" || key == "model_prefix") {
                set_err(err, errlen, "option '" + key + "' is set by the shim");
                return TMF_SP_INVALID_ARGUMENT;
            }
            kwargs[key] = values[i];
        }
        sentencepiece::logging::SetMinLogLevel(2);  // errors only; library code never prints
        ArrayIterator it(sentences, lengths, n_sentences);
        std::string proto;
        auto st = sentencepiece::SentencePieceTrainer::Train(kwargs, &it, &proto);
        if (!st.ok()) return from_status(st, err, errlen);
        if (proto.empty()) {
            set_err(err, errlen, "training produced an empty model");
            return TMF_SP_FAILED;
        }
        auto *buf = static_cast<char *>(std::malloc(proto.size()));
        if (!buf) throw std::bad_alloc();
        std::memcpy(buf, proto.data(), proto.size());
        *model = buf;
        *model_len = proto.size();
        return TMF_SP_OK;
    });
}

}  // extern "C"
