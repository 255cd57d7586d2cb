// `tsumugi tokenizer ...`: encode and decode with SentencePiece models, inspect them, write
// their .vocab files.
#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>

#include "cli/commands.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/io.h"
#include "util/log.h"
#include "util/thread_pool.h"

namespace tsumugi::cli {

namespace {

using tokenizer::Tokenizer;

struct CodecArgs {
  std::string model, format = "id", output = "-";
  std::vector<std::string> inputs;
  unsigned threads = 1;
};

// stdin is read as raw bytes (no compression sniffing), so that any line reaches the tokenizer
// exactly as spm_encode would see it. Named files follow their extension (.gz, .zst).
std::string input_path(const std::string& p) { return p == "-" ? "/dev/stdin" : p; }

// Splits on ' ' and drops empty fields, as spm_decode does.
void split_spaces(std::string_view line, std::vector<std::string_view>& out) {
  out.clear();
  size_t pos = 0;
  while (pos <= line.size()) {
    size_t sp = line.find(' ', pos);
    if (sp == std::string_view::npos) sp = line.size();
    if (sp > pos) out.push_back(line.substr(pos, sp - pos));
    pos = sp + 1;
  }
}

// Runs `work(line, out, origin, line_number)` (which appends one output line to `out`) over all
// input lines, writing results in input order. With more than one thread, batches of lines go
// to a pool and come back in submission order.
template <typename Work>
void process_lines(const CodecArgs& a, Work&& work) {
  OutputFile out(a.output);
  std::vector<std::string> inputs = a.inputs.empty() ? std::vector<std::string>{"-"} : a.inputs;
  constexpr size_t kChunk = 1 << 20;

  if (a.threads == 1) {
    std::string buf;
    for (const auto& in : inputs) {
      const std::string origin = in == "-" ? std::string("<stdin>") : in;
      LineReader reader(input_path(in));
      std::string_view line;
      while (reader.next(line)) {
        work(line, buf, origin, reader.line_number());
        if (buf.size() >= kChunk) {
          throw_if_interrupted();
          out.write(buf);
          buf.clear();
        }
      }
    }
    out.write(buf);
    out.commit();
    return;
  }

  ThreadPool pool(a.threads);
  const size_t max_inflight = pool.size() * 3;
  std::deque<std::future<std::string>> inflight;
  struct Batch {
    std::string bytes;             // the lines, back to back
    std::vector<size_t> ends;      // end offset of each line
    std::string origin;
    uint64_t first_line = 0;
  };
  for (const auto& in : inputs) {
    const std::string origin = in == "-" ? std::string("<stdin>") : in;
    LineReader reader(input_path(in));
    std::string_view line;
    bool more = true;
    while (more) {
      auto batch = std::make_shared<Batch>();
      batch->origin = origin;
      batch->first_line = reader.line_number() + 1;
      while (batch->bytes.size() < kChunk && (more = reader.next(line))) {
        batch->bytes.append(line);
        batch->ends.push_back(batch->bytes.size());
      }
      if (batch->ends.empty()) break;
      throw_if_interrupted();
      inflight.push_back(pool.submit([batch, &work] {
        std::string text;
        size_t begin = 0;
        for (size_t i = 0; i < batch->ends.size(); ++i) {
          work(std::string_view(batch->bytes).substr(begin, batch->ends[i] - begin), text, batch->origin,
               batch->first_line + i);
          begin = batch->ends[i];
        }
        return text;
      }));
      while (inflight.size() >= max_inflight) {
        out.write(inflight.front().get());
        inflight.pop_front();
      }
    }
  }
  while (!inflight.empty()) {
    out.write(inflight.front().get());
    inflight.pop_front();
  }
  out.commit();
}

void add_codec_options(CLI::App* cmd, CodecArgs& a, const char* format_flag, const char* format_help) {
  cmd->add_option("inputs", a.inputs, "Input files ('-' or none: stdin); .gz/.zst files are decompressed");
  cmd->add_option("-m,--model", a.model, "SentencePiece model file (.model)")->required();
  cmd->add_option(format_flag, a.format, format_help)->check(CLI::IsMember({"id", "piece"}))->capture_default_str();
  cmd->add_option("-o,--output", a.output, "Output file ('-': stdout); written atomically")->capture_default_str();
  cmd->add_option("-j,--threads", a.threads, "Worker threads (0: all cores); output order is input order")
      ->capture_default_str();
}

}  // namespace

void register_tokenizer(CLI::App& app) {
  auto* tok = app.add_subcommand("tokenizer", "Train, encode and decode SentencePiece tokenizers");
  register_tokenizer_train(*tok);
  tok->description(
      "Work with SentencePiece .model files (unigram, BPE, word, char; any normalization rule, byte\n"
      "fallback, user-defined and control symbols). encode/decode print byte-for-byte what\n"
      "spm_encode / spm_decode (SentencePiece 0.1.97) print.");
  tok->require_subcommand(1);
  register_tokenizer_export(*tok);

  auto enc = std::make_shared<CodecArgs>();
  auto* encode = tok->add_subcommand("encode", "Text lines to ids or pieces, one output line per input line");
  add_codec_options(encode, *enc, "--output-format", "What to print: id or piece");
  encode->footer(
      "Examples:\n"
      "  tsumugi tokenizer encode --model ja.model < text.txt > ids.txt\n"
      "  tsumugi tokenizer encode --model ja.model --output-format piece -j 0 corpus.txt.gz -o pieces.txt");
  encode->callback([enc] {
    set_action([enc] {
      install_interrupt_handler();
      const Tokenizer t = Tokenizer::load(enc->model);
      const bool ids_out = enc->format == "id";
      // Decimal text of every id, so writing an id is one copy. Scratch vectors are per thread:
      // the pool runs the lambda on several threads at once.
      struct IdText {
        char text[11];
        uint8_t len;
      };
      std::vector<IdText> id_text(size_t(t.vocab_size()));
      for (size_t id = 0; id < id_text.size(); ++id) {
        auto r = std::to_chars(id_text[id].text, id_text[id].text + sizeof id_text[id].text, int32_t(id));
        id_text[id].len = uint8_t(r.ptr - id_text[id].text);
      }
      process_lines(*enc, [&t, &id_text, ids_out](std::string_view line, std::string& out, const std::string&,
                                                  uint64_t) {
        thread_local std::vector<int32_t> ids;
        thread_local std::vector<std::string> pieces;
        if (ids_out) {
          ids.clear();
          t.encode(line, ids);
          const size_t old = out.size();
          out.resize(old + ids.size() * 12 + 1);
          char* w = out.data() + old;
          for (size_t i = 0; i < ids.size(); ++i) {
            if (i) *w++ = ' ';
            const IdText& it = id_text[size_t(ids[i])];
            std::memcpy(w, it.text, sizeof it.text);
            w += it.len;
          }
          *w++ = '\n';
          out.resize(size_t(w - out.data()));
        } else {
          pieces.clear();
          t.encode_pieces(line, pieces);
          for (size_t i = 0; i < pieces.size(); ++i) {
            if (i) out.push_back(' ');
            out += pieces[i];
          }
          out.push_back('\n');
        }
      });
      return 0;
    });
  });

  auto dec = std::make_shared<CodecArgs>();
  auto* decode = tok->add_subcommand("decode", "Lines of ids or pieces (space-separated) back to text");
  add_codec_options(decode, *dec, "--input-format", "What the input holds: id or piece");
  decode->footer(
      "Examples:\n"
      "  tsumugi tokenizer decode --model ja.model < ids.txt\n"
      "  tsumugi tokenizer decode --model ja.model --input-format piece pieces.txt");
  decode->callback([dec] {
    set_action([dec] {
      install_interrupt_handler();
      const Tokenizer t = Tokenizer::load(dec->model);
      const bool ids_in = dec->format == "id";
      process_lines(*dec, [&t, ids_in](std::string_view line, std::string& out, const std::string& origin,
                                       uint64_t line_no) {
        thread_local std::vector<std::string_view> fields;
        thread_local std::vector<int32_t> ids;
        thread_local std::string tmp;
        split_spaces(line, fields);
        if (ids_in) {
          ids.clear();
          for (auto f : fields) {
            tmp.assign(f);
            ids.push_back(int32_t(std::strtol(tmp.c_str(), nullptr, 10)));  // atoi, as spm_decode
          }
          try {
            out += t.decode(ids);
          } catch (const Error& e) {
            throw InputError(origin, line_no, e.what());
          }
        } else {
          out += t.decode_pieces(fields);
        }
        out.push_back('\n');
      });
      return 0;
    });
  });

  auto info_model = std::make_shared<std::string>();
  auto* info = tok->add_subcommand("info", "Summarize a model: type, vocabulary, normalization, special pieces");
  info->add_option("-m,--model", *info_model, "SentencePiece model file (.model)")->required();
  info->callback([info_model] {
    set_action([info_model] {
      const Tokenizer t = Tokenizer::load(*info_model);
      const auto& m = t.model();
      const auto& ts = m.trainer();
      const auto& ns = m.normalizer();
      size_t counts[7] = {};
      for (int32_t id = 0; id < t.vocab_size(); ++id) counts[int(t.piece_type(id))]++;
      std::printf("model               %s\n", info_model->c_str());
      std::printf("type                %s\n", tokenizer::model_type_name(t.model_type()));
      std::printf("vocab_size          %d\n", t.vocab_size());
      std::printf("pieces              normal %zu, user_defined %zu, control %zu, unknown %zu, byte %zu, unused %zu\n",
                  counts[1], counts[4], counts[3], counts[2], counts[6], counts[5]);
      std::printf("normalization       %s\n", ns.name ? ns.name->c_str() : "(unnamed)");
      std::printf("charsmap            %zu bytes\n", ns.charsmap().size());
      std::printf("add_dummy_prefix    %s\n", ns.add_dummy_prefix_or_default() ? "true" : "false");
      std::printf("remove_extra_ws     %s\n", ns.remove_extra_whitespaces_or_default() ? "true" : "false");
      std::printf("escape_whitespaces  %s\n", ns.escape_whitespaces_or_default() ? "true" : "false");
      std::printf("ws_as_suffix        %s\n", ts.treat_whitespace_as_suffix_or_default() ? "true" : "false");
      std::printf("byte_fallback       %s\n", ts.byte_fallback_or_default() ? "true" : "false");
      std::printf("unk/bos/eos/pad     %d %d %d %d\n", t.unk_id(), t.bos_id(), t.eos_id(), t.pad_id());
      return 0;
    });
  });

  auto vocab_model = std::make_shared<std::string>();
  auto vocab_out = std::make_shared<std::string>("-");
  auto* vocab = tok->add_subcommand("vocab", "Write a model's .vocab file (piece TAB score per line, as spm_train)");
  vocab->add_option("-m,--model", *vocab_model, "SentencePiece model file (.model)")->required();
  vocab->add_option("-o,--output", *vocab_out, "Output file ('-': stdout)")->capture_default_str();
  vocab->callback([vocab_model, vocab_out] {
    set_action([vocab_model, vocab_out] {
      const Tokenizer t = Tokenizer::load(*vocab_model);
      OutputFile out(*vocab_out);
      out.write(tokenizer::format_vocab(t.model()));
      out.commit();
      return 0;
    });
  });
}

}  // namespace tsumugi::cli
