// SentencePiece .model files through libsentencepiece: the reference implementation, used
// whenever the model file itself is at hand (it carries the normaliser settings that a
// tokenizer.bin has lost).
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "la/tokenizer/bpe_tokenizer.h"
#include "la/tokenizer/tokenizer.h"

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace la {

class SpTokenizer final : public Tokenizer {
 public:
  // Parses a serialized ModelProto; throws la::Error naming `path` when libsentencepiece
  // rejects it.
  SpTokenizer(std::string_view serialized, const std::string& path);
  ~SpTokenizer() override;

  static std::unique_ptr<SpTokenizer> load(const std::string& path);

  std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const override;
  std::string piece_bytes(int id) const override;
  std::string_view piece(int id) const override;
  int vocab_size() const override { return static_cast<int>(bytes_.size()); }
  int bos_id() const override { return bos_id_; }
  int eos_id() const override { return eos_id_; }
  bool is_special(int id) const override;

  const sentencepiece::SentencePieceProcessor& processor() const { return *processor_; }

  // The vocabulary (pieces, scores, types, special ids) as a plain BpeVocab, for writing it
  // into GGUF files. Only meaningful for BPE models.
  BpeVocab to_vocab() const;

 private:
  void check_id(int id) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
  std::string path_;
  std::vector<std::string> bytes_;  // piece_bytes() of every id, computed once
  int bos_id_ = -1;
  int eos_id_ = -1;
};

}  // namespace la
