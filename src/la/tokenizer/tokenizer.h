// Tokenizers: text <-> token ids. One interface; implementations for SentencePiece .model
// (through libsentencepiece), llama2.c tokenizer.bin (our own BPE) and, later, GGUF vocabularies.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace la {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // SentencePiece-style encoding of `text` (dummy-prefix space, byte fallback).
  // BOS/EOS are added only when asked.
  virtual std::vector<int> encode(std::string_view text, bool add_bos, bool add_eos) const = 0;

  // Raw bytes of piece `id` as it appears in decoded text: "▁" becomes ' ', a byte piece
  // "<0x0A>" becomes the single byte 0x0A, control tokens (BOS/EOS/UNK) become "".
  virtual std::string piece_bytes(int id) const = 0;

  // The piece as stored in the vocabulary ("▁Hello", "<0x0A>", "<s>").
  virtual std::string_view piece(int id) const = 0;

  virtual int vocab_size() const = 0;
  virtual int bos_id() const = 0;
  virtual int eos_id() const = 0;

  // Whether piece `id` is a special token (SentencePiece type CONTROL or USER_DEFINED: "<s>",
  // "<|im_end|>"): chat templates write these by their text, and only template text may become
  // one (chat/chat_template.h). The default knows only BOS and EOS.
  virtual bool is_special(int id) const { return id == bos_id() || id == eos_id(); }

  // Decodes a whole sequence the way SentencePiece does: byte pieces reassembled into UTF-8,
  // the leading space of the first piece (dummy prefix) dropped, BOS/EOS not printed.
  std::string decode(const std::vector<int>& ids) const;
};

// Streams decoded text token by token: accumulates byte pieces until they form complete UTF-8
// characters, and drops the dummy-prefix space of the first printed piece (after BOS, as
// llama2.c does). The pushes plus flush() add up to exactly decode() of the same ids.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok) : tok_(tok) {}
  // Returns the text that became complete with this token (possibly empty).
  std::string push(int id);
  // Returns whatever is still held back (an incomplete UTF-8 tail, as U+FFFD per byte like
  // decode()), then resets to the start of a new text.
  std::string flush();

 private:
  const Tokenizer& tok_;
  std::string pending_;
  bool at_start_ = true;
};

// UTF-8 with SentencePiece's rules (shared by the normaliser and the decoders).
// Length (1-4) of the well-formed character at the start of `s`, or 0 when the bytes there are
// not one (bad lead or trail byte, overlong form, surrogate, above U+10FFFF, cut short).
int utf8_char_length(std::string_view s);
// `s` with every byte that does not start a well-formed character replaced by U+FFFD, one
// replacement per bad byte, exactly as SentencePiece treats malformed input and byte pieces.
std::string sanitize_utf8(std::string_view s);

// Loads a tokenizer, detecting the format by content: SentencePiece ModelProto (.model, through
// libsentencepiece: SpTokenizer) or a llama2.c tokenizer.bin (our BPE: BpeTokenizer). Throws
// la::Error naming the file when it is missing, neither, or damaged.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path);

// Finds the tokenizer that belongs to a model: for a directory, tokenizer.model or
// tokenizer.bin inside it (a Meta directory, with params.json: also tokenizer.model in its
// parent); for a file, beside it, the most specific name first:
// <stem>_tok<vocab>.{model,bin}, tok<vocab>.{model,bin}, tokenizer.{model,bin} (the tok<vocab>
// names only when vocab_size > 0). Returns "" when none is found.
std::string find_tokenizer_for_model(const std::string& model_path, int vocab_size);

}  // namespace la
