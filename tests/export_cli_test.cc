// `tsumugi export` / `tsumugi import`: GGUF files whose every tensor is the checkpoint's weight
// converted as llama.cpp expects (names, GGML shapes, rope permutation, F32 norms, Q8_0 blocks) and
// whose tokenizer metadata is the SentencePiece model, read by our reader and by the `gguf` package;
// Hugging Face directories that `transformers` loads with the same logits as tsumugi's Engine;
// export -> import round trips bit for bit (f32, and f16/bf16 for representable values, sharded too);
// directories written by `transformers` imported; and bad input refused with a clear message.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <random>
#include <set>

#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "infer/engine.h"
#include "infer/model_export.h"
#include "model/config.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/trainer.h"
#include "train/checkpoint.h"
#include "util/io.h"

using namespace tsumugi;
using tsumugi::testing::run_command;
using tsumugi::testing::run_tsumugi;
using tsumugi::testing::tsumugi_binary;
using tsumugi::testing::TempDir;
using tsumugi::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

const std::string kPython = "/usr/bin/python3";

bool python_has(const std::string& modules) { return tsumugi::testing::python_has(kPython, modules); }

// A small SentencePiece model trained on the bundled Japanese corpus, with <EOD> as control piece.
const std::string& shared_tokenizer() {
  static const std::string path = [] {
    static TempDir dir;  // lives for the whole test program
    tokenizer::TrainOptions o;
    o.inputs = {std::string(TSUMUGI_SOURCE_DIR) + "/data/corpus/ja.jsonl.gz"};
    o.input_sentence_size = 300;
    o.vocab_size = 800;
    o.character_coverage = 0.98f;
    o.byte_fallback = true;
    o.control_symbols = {"<EOD>"};
    o.num_threads = 2;
    o.seed_sentencepiece_size = 20000;
    const std::string prefix = dir.file("tok");
    tokenizer::train_and_save(o, prefix);
    return prefix + ".model";
  }();
  return path;
}

model::ModelConfig small_config(model::Family fam, bool tied = false) {
  model::ModelConfig c;
  c.family = fam;
  c.n_layer = 2;
  c.d_model = 64;
  c.max_seq = 48;
  c.vocab_size = model::pad_vocab(tokenizer::Tokenizer::load(shared_tokenizer()).vocab_size());
  if (fam == model::Family::GPT2) {
    c.n_head = c.n_kv_head = 2;
    c.d_ff = 256;
    c.tie_embeddings = true;
  } else {
    c.n_head = 4;
    c.n_kv_head = 2;
    c.d_ff = 96;
    c.tie_embeddings = tied;
    c.rope_theta = 10000.0f;
  }
  c.validate();
  return c;
}

// Weights drawn at random; with `grid`, multiples of 2^-10 in [-1, 1], exact in f16 and bf16 alike
// (bf16 has 8 significant bits: k/1024 with |k| < 256 is exact in both).
std::vector<float> random_weights(const model::ModelConfig& c, uint64_t seed, bool grid = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.08f);
  std::uniform_int_distribution<int> gi(-255, 255);
  std::vector<float> w(c.num_parameters());
  for (auto& x : w) x = grid ? gi(rng) / 1024.0f : nd(rng);
  for (const auto& p : model::parameter_layout(c))
    if (p.shape.size() == 1 && p.name.find("bias") == std::string::npos)  // norm gains near 1
      for (uint64_t i = 0; i < p.size; ++i)
        w[p.offset + i] = grid ? 1.0f + float(gi(rng) / 2) / 128.0f : w[p.offset + i] + 1.0f;  // (128 + k) / 128: 8 bits
  return w;
}

std::string make_checkpoint(const TempDir& dir, const std::string& name, const model::ModelConfig& c,
                            const std::vector<float>& w) {
  const std::string path = dir.file(name);
  const auto tok = tokenizer::Tokenizer::load(shared_tokenizer());
  const int eod = tok.piece_to_id("<EOD>");
  train::save_checkpoint(path, c, w, {}, {}, {}, shared_tokenizer(), tok.bos_id(), eod);
  return path;
}

// The last line of a script's output (Python may print warnings before it).
nlohmann::json last_json_line(const std::string& out) {
  std::string s = out;
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return nlohmann::json::parse(s.substr(s.rfind('\n') == std::string::npos ? 0 : s.rfind('\n') + 1));
}

// Logits after each position of `ids` from tsumugi's Engine.
std::vector<std::vector<float>> engine_logits(const std::string& dir, const std::vector<int32_t>& ids) {
  auto e = infer::Engine::load(dir);
  auto d = e->new_decoder();
  std::vector<std::vector<float>> out;
  for (int32_t id : ids) {
    std::vector<float> l(e->config().vocab_size);
    d->append(&id, 1, l.data());
    out.push_back(std::move(l));
  }
  return out;
}

class ExportCliModel : public ::testing::TestWithParam<model::Family> {
 protected:
  void SetUp() override {
    cfg_ = small_config(GetParam());
    w_ = random_weights(cfg_, 11);
    ckpt_ = make_checkpoint(dir_, "ckpt", cfg_, w_);
  }
  TempDir dir_;
  model::ModelConfig cfg_;
  std::vector<float> w_;
  std::string ckpt_;
};

// The source value of GGUF element (row, col) of a tensor, undoing llama.cpp's rope permutation for
// attn_q / attn_k: GGUF row h*d + 2j + s holds HF row h*d + s*d/2 + j.
float source_value(const model::ModelConfig& c, const model::ParamTensor& p, const std::string& gguf_name,
                   const std::vector<float>& w, int64_t row, int64_t col) {
  const int64_t cols = p.shape.size() == 2 ? p.shape[1] : 1;
  int64_t src_row = row;
  const bool q = gguf_name.ends_with("attn_q.weight"), k = gguf_name.ends_with("attn_k.weight");
  if (c.family == model::Family::LLaMA && (q || k)) {
    const int64_t d = c.head_dim(), h = row / d, r = row % d;
    src_row = h * d + (r % 2) * (d / 2) + r / 2;
  }
  return w[p.offset + src_row * cols + col];
}

}  // namespace

TEST_P(ExportCliModel, GgufTensorsAreTheWeightsConvertedAsLlamaCppExpects) {
  for (const std::string dtype : {"f32", "f16", "bf16", "q8_0"}) {
    SCOPED_TRACE(dtype);
    const std::string out = dir_.file("m-" + dtype + ".gguf");
    run_tsumugi("export --format gguf --dtype " + dtype + " --model " + ckpt_ + " -o " + out);
    formats::GgufFile f(out);
    const std::string arch = GetParam() == model::Family::GPT2 ? "gpt2" : "llama";
    EXPECT_EQ(f.at("general.architecture").s, arch);
    EXPECT_EQ(f.alignment(), 32u);
    EXPECT_EQ(f.at(arch + ".block_count").u, 2u);
    EXPECT_EQ(f.at(arch + ".embedding_length").u, 64u);
    EXPECT_EQ(f.at(arch + ".context_length").u, 48u);
    EXPECT_EQ(f.at(arch + ".feed_forward_length").u, uint64_t(cfg_.d_ff));
    EXPECT_EQ(f.at(arch + ".attention.head_count").u, uint64_t(cfg_.n_head));
    if (arch == "llama") {
      EXPECT_EQ(f.at("llama.attention.head_count_kv").u, 2u);
      EXPECT_EQ(f.at("llama.rope.dimension_count").u, 16u);
      EXPECT_EQ(f.at("llama.rope.freq_base").type, formats::GgufType::FLOAT32);
      EXPECT_FLOAT_EQ(float(f.at("llama.attention.layer_norm_rms_epsilon").f), cfg_.norm_eps);
    } else {
      EXPECT_FLOAT_EQ(float(f.at("gpt2.attention.layer_norm_epsilon").f), cfg_.norm_eps);
    }
    const uint64_t ftype = dtype == "f32" ? 0 : dtype == "f16" ? 1 : dtype == "bf16" ? 32 : 7;
    EXPECT_EQ(f.at("general.file_type").u, ftype);

    // The tokenizer: every piece, score and type, padded to the embedding rows.
    const auto tok = tokenizer::Tokenizer::load(shared_tokenizer());
    const auto& tokens = f.at("tokenizer.ggml.tokens").array;
    const auto& scores = f.at("tokenizer.ggml.scores").array;
    const auto& types = f.at("tokenizer.ggml.token_type").array;
    EXPECT_EQ(f.at("tokenizer.ggml.model").s, "llama");
    ASSERT_EQ(tokens.size(), size_t(cfg_.vocab_size));
    ASSERT_EQ(scores.size(), tokens.size());
    ASSERT_EQ(types.size(), tokens.size());
    for (int id = 0; id < tok.vocab_size(); ++id) {
      ASSERT_EQ(tokens[id].s, tok.id_to_piece(id)) << id;
      ASSERT_EQ(float(scores[id].f), tok.score(id)) << id;
      ASSERT_EQ(types[id].i, int(tok.piece_type(id))) << id;
    }
    for (size_t id = tok.vocab_size(); id < tokens.size(); ++id) EXPECT_EQ(types[id].i, 5);  // UNUSED
    EXPECT_EQ(f.at("tokenizer.ggml.eos_token_id").u, uint64_t(tok.piece_to_id("<EOD>")));
    EXPECT_EQ(f.at("tokenizer.ggml.bos_token_id").u, uint64_t(tok.bos_id()));
    EXPECT_EQ(f.at("tokenizer.ggml.unknown_token_id").u, uint64_t(tok.unk_id()));
    EXPECT_FALSE(f.at("tokenizer.ggml.add_bos_token").b);
    EXPECT_TRUE(f.at("tokenizer.ggml.add_space_prefix").b);

    // Tensors: llama.cpp's names, GGML shapes, types, and values.
    const auto layout = model::parameter_layout(cfg_);
    const auto names = infer::gguf_tensor_names(cfg_);
    ASSERT_EQ(f.tensors().size(), layout.size());
    EXPECT_EQ(f.find_tensor("output.weight") != nullptr, !cfg_.tie_embeddings) << "a tied output is left to llama.cpp";
    if (arch == "gpt2") EXPECT_NE(f.find_tensor("blk.1.attn_qkv.weight"), nullptr);
    if (arch == "llama") EXPECT_NE(f.find_tensor("blk.1.ffn_gate.weight"), nullptr);
    for (size_t k = 0; k < layout.size(); ++k) {
      const auto& p = layout[k];
      const std::string& gname = names[k].second;
      const auto* t = f.find_tensor(gname);
      ASSERT_NE(t, nullptr) << gname;
      std::vector<uint64_t> ne(p.shape.rbegin(), p.shape.rend());
      EXPECT_EQ(t->ne, ne) << gname;
      const bool keep_f32 = p.shape.size() == 1 || gname == "position_embd.weight";
      const uint32_t want_type = keep_f32 ? 0 : dtype == "f32" ? 0 : dtype == "f16" ? 1 : dtype == "bf16" ? 30 : 8;
      EXPECT_EQ(t->type, want_type) << gname;
      const int64_t rows = p.shape.size() == 2 ? p.shape[0] : 1, cols = p.shape.back();
      std::vector<float> src(p.size);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) src[r * cols + c] = source_value(cfg_, p, gname, w_, r, c);
      std::vector<std::byte> want(t->data.size());
      switch (want_type) {
        case 0: std::memcpy(want.data(), src.data(), src.size() * 4); break;
        case 1:
        case 30:
          for (size_t i = 0; i < src.size(); ++i) {
            const uint16_t h = want_type == 1 ? formats::float_to_f16(src[i]) : formats::float_to_bf16(src[i]);
            std::memcpy(want.data() + 2 * i, &h, 2);
          }
          break;
        case 8: formats::quantize_q8_0(src.data(), int64_t(src.size()), want.data()); break;
      }
      ASSERT_EQ(want.size(), t->data.size()) << gname;
      EXPECT_EQ(0, std::memcmp(want.data(), t->data.data(), want.size())) << gname << " bytes differ";
    }
  }
}

TEST_P(ExportCliModel, GgufReadByLlamaCppPythonPackage) {
  if (!python_has("gguf")) {
    FAIL() << "the `gguf` Python package is missing: /usr/bin/python3 -m pip install --break-system-packages gguf==0.19.0";
  }
  const std::string out = dir_.file("m.gguf");
  run_tsumugi("export --format gguf --dtype q8_0 --model " + ckpt_ + " -o " + out + " --no-progress");
  const std::string script = dir_.file("read.py");
  write_bytes(script, R"(import gguf, json, sys, numpy as np
r = gguf.GGUFReader(sys.argv[1])
f = r.fields
res = {"arch": bytes(f["general.architecture"].parts[-1]).decode(),
       "n_tokens": len(f["tokenizer.ggml.tokens"].data),
       "tok5": bytes(f["tokenizer.ggml.tokens"].parts[f["tokenizer.ggml.tokens"].data[5]]).decode(),
       "tensors": {}}
for t in r.tensors:
    v = t.data
    if t.tensor_type == gguf.GGMLQuantizationType.Q8_0:
        v = gguf.quants.dequantize(t.data, t.tensor_type)
    res["tensors"][t.name] = {"type": int(t.tensor_type), "shape": [int(x) for x in t.shape],
                              "sum": float(np.asarray(v, dtype=np.float64).sum()), "n": int(t.n_elements)}
print(json.dumps(res))
)");
  std::string py;
  ASSERT_EQ(run_command(kPython + " " + script + " " + out + " 2>&1", py), 0) << py;
  const auto j = last_json_line(py);
  formats::GgufFile f(out);
  EXPECT_EQ(j["arch"], f.at("general.architecture").s);
  EXPECT_EQ(j["n_tokens"].get<int>(), cfg_.vocab_size);
  EXPECT_EQ(j["tok5"], f.at("tokenizer.ggml.tokens").array[5].s);
  ASSERT_EQ(j["tensors"].size(), f.tensors().size());
  for (const auto& t : f.tensors()) {
    const auto& jt = j["tensors"][t.name];
    EXPECT_EQ(jt["type"].get<uint32_t>(), t.type) << t.name;
    EXPECT_EQ(jt["shape"].get<std::vector<uint64_t>>(), t.ne) << t.name;
    const auto v = f.to_float(t.name);
    double sum = 0;
    for (float x : v) sum += x;
    EXPECT_NEAR(jt["sum"].get<double>(), sum, 1e-9 * (1 + std::fabs(sum)) + 1e-6) << t.name;
  }
}

TEST_P(ExportCliModel, HfExportImportRoundTripsBitExactly) {
  // f32: any values. f16 / bf16: values on a grid both formats represent exactly.
  const auto grid_w = random_weights(cfg_, 12, true);
  const std::string grid = make_checkpoint(dir_, "grid", cfg_, grid_w);
  struct Case {
    std::string dtype, extra, src;
    const std::vector<float>* w;
  };
  const Case cases[] = {{"f32", "", ckpt_, &w_},
                        {"f16", "", grid, &grid_w},
                        {"bf16", "", grid, &grid_w},
                        {"f32", "--max-shard-size 20KB", ckpt_, &w_}};
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.dtype + " " + c.extra);
    const std::string hf = dir_.file("hf" + std::to_string(n)), back = dir_.file("back" + std::to_string(n));
    ++n;
    run_tsumugi("export --format hf --dtype " + c.dtype + " " + c.extra + " --model " + c.src + " -o " + hf);
    for (const char* file : {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
                             "tokenizer_config.json", "special_tokens_map.json"})
      EXPECT_TRUE(fs::exists(fs::path(hf) / file)) << file;
    const auto cfg = nlohmann::json::parse(read_file(hf + "/config.json"));
    EXPECT_EQ(cfg["torch_dtype"], c.dtype == "f32" ? "float32" : c.dtype == "f16" ? "float16" : "bfloat16");
    if (!c.extra.empty()) {
      EXPECT_FALSE(fs::exists(hf + "/model.safetensors"));
      const auto index = nlohmann::json::parse(read_file(hf + "/model.safetensors.index.json"));
      std::set<std::string> shards;
      for (const auto& [k, v] : index["weight_map"].items()) shards.insert(v.get<std::string>());
      EXPECT_GT(shards.size(), 2u);
      // A shard holds at most 20 KB of tensors, or one tensor larger than that.
      for (const auto& s : shards) {
        formats::SafetensorsFile st((fs::path(hf) / s).string());
        uint64_t bytes = 0;
        for (const auto& t : st.tensors()) bytes += t.data.size();
        EXPECT_TRUE(bytes <= 20000 || st.tensors().size() == 1) << s << ": " << bytes;
      }
    } else {
      formats::SafetensorsFile st(hf + "/model.safetensors");
      EXPECT_EQ(formats::dtype_name(st.tensors()[0].dtype),
                c.dtype == "f32" ? "F32" : c.dtype == "f16" ? "F16" : "BF16");
    }
    run_tsumugi("import --from-hf " + hf + " -o " + back);
    const auto loaded = train::load_checkpoint(back, false);
    EXPECT_EQ(loaded.config.summary(), cfg_.summary());
    ASSERT_EQ(loaded.weights.size(), c.w->size());
    EXPECT_EQ(0, std::memcmp(loaded.weights.data(), c.w->data(), c.w->size() * 4)) << "weights changed in the round trip";
    EXPECT_EQ(read_file(back + "/tokenizer.model"), read_file(shared_tokenizer()));
  }
  // The imported checkpoint generates like the original.
  const std::string a = run_tsumugi("generate --model " + ckpt_ + " --prompt-ids '5 6 7' --max-tokens 6 --output-format ids");
  const std::string b = run_tsumugi("generate --model " + dir_.file("back0") + " --prompt-ids '5 6 7' --max-tokens 6 --output-format ids");
  EXPECT_EQ(a, b);
}

TEST_P(ExportCliModel, HfExportLoadsInTransformersWithTheEngineLogits) {
  if (!python_has("torch transformers"))
    FAIL() << "the transformers oracle is missing: Debian python3-torch and transformers (tests/requirements-torch.txt)";
  const std::string hf = dir_.file("hf");
  run_tsumugi("export --format hf --model " + ckpt_ + " -o " + hf);
  run_tsumugi("export --format hf --dtype bf16 --model " + ckpt_ + " -o " + hf + "-bf16");
  const std::vector<int32_t> ids = {5, 17, 3, 250, 42, 9, 100, 7};
  const std::string script = dir_.file("hf.py");
  write_bytes(script, R"(import json, sys, torch, transformers
ids = json.loads(sys.argv[2])
m = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float32).eval()
with torch.no_grad():
    logits = m(torch.tensor([ids])).logits[0]
b = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1] + "-bf16", torch_dtype="auto").eval()
bf16_ok = b.dtype == torch.bfloat16 and all(
    torch.equal(p.to(torch.bfloat16), b.state_dict()[k]) for k, p in m.state_dict().items() if k in b.state_dict())
tok = transformers.AutoTokenizer.from_pretrained(sys.argv[1])
print(json.dumps({"arch": type(m).__name__, "logits": logits.tolist(), "bf16_ok": bool(bf16_ok),
                  "enc": tok("吾輩は猫である。", add_special_tokens=False)["input_ids"]}))
)");
  std::string ids_json = "[";
  for (size_t k = 0; k < ids.size(); ++k) ids_json += (k ? "," : "") + std::to_string(ids[k]);
  ids_json += "]";
  std::string out;
  ASSERT_EQ(run_command(kPython + " " + script + " " + hf + " '" + ids_json + "'", out), 0) << out;
  const auto j = last_json_line(out);
  EXPECT_EQ(j["arch"], GetParam() == model::Family::GPT2 ? "GPT2LMHeadModel" : "LlamaForCausalLM");
  EXPECT_TRUE(j["bf16_ok"].get<bool>()) << "bf16 export is not the f32 weights rounded";
  const auto ours = engine_logits(ckpt_, ids);
  double max_diff = 0;
  for (size_t t = 0; t < ids.size(); ++t)
    for (int v = 0; v < cfg_.vocab_size; ++v)
      max_diff = std::max(max_diff, std::fabs(double(ours[t][v]) - j["logits"][t][v].get<double>()));
  EXPECT_LT(max_diff, 1e-4) << "logits differ from transformers";
  std::vector<int32_t> enc;
  tokenizer::Tokenizer::load(shared_tokenizer()).encode("吾輩は猫である。", enc);
  EXPECT_EQ(j["enc"].get<std::vector<int32_t>>(), enc);
}

TEST_P(ExportCliModel, ImportsWhatTransformersWrote) {
  if (!python_has("torch transformers"))
    FAIL() << "the transformers oracle is missing: Debian python3-torch and transformers (tests/requirements-torch.txt)";
  // transformers writes a random model of our shape, sharded, in bf16; we import it and compare
  // logits with transformers' own on the same (bf16-valued) weights in fp32.
  const std::string hf = dir_.file("theirs");
  const std::string script = dir_.file("make.py");
  write_bytes(script, R"(import json, sys, shutil, torch, transformers
fam, out, tok, V = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.manual_seed(0)
if fam == "gpt2":
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=64, n_positions=48, vocab_size=V,
                                  activation_function="gelu_new")
    m = transformers.GPT2LMHeadModel(cfg)
else:
    cfg = transformers.LlamaConfig(num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                   hidden_size=64, intermediate_size=96, max_position_embeddings=48,
                                   vocab_size=V, rms_norm_eps=1e-5, tie_word_embeddings=False)
    m = transformers.LlamaForCausalLM(cfg)
with torch.no_grad():
    for p in m.parameters():
        p.add_(torch.randn_like(p) * 0.05)
m = m.to(torch.bfloat16).eval()
m.save_pretrained(out, max_shard_size="40KB", safe_serialization=True)
shutil.copy(tok, out + "/tokenizer.model")
ids = [5, 17, 3, 250, 42, 9]
with torch.no_grad():
    print(json.dumps(m.float()(torch.tensor([ids])).logits[0].tolist()))
)");
  const std::string fam = GetParam() == model::Family::GPT2 ? "gpt2" : "llama";
  std::string out;
  ASSERT_EQ(run_command(kPython + " " + script + " " + fam + " " + hf + " " + shared_tokenizer() + " " +
                            std::to_string(cfg_.vocab_size),
                        out),
            0)
      << out;
  const auto ref = last_json_line(out);
  ASSERT_TRUE(fs::exists(hf + "/model.safetensors.index.json")) << "transformers did not shard";
  const std::string ck = dir_.file("imported");
  run_tsumugi("import --from-hf " + hf + " -o " + ck);
  EXPECT_TRUE(fs::exists(ck + "/tokenizer.model"));
  const auto ours = engine_logits(ck, {5, 17, 3, 250, 42, 9});
  double max_diff = 0;
  for (size_t t = 0; t < ours.size(); ++t)
    for (int v = 0; v < cfg_.vocab_size; ++v)
      max_diff = std::max(max_diff, std::fabs(double(ours[t][v]) - ref[t][v].get<double>()));
  EXPECT_LT(max_diff, 1e-4);
}

INSTANTIATE_TEST_SUITE_P(ExportCli, ExportCliModel, ::testing::Values(model::Family::GPT2, model::Family::LLaMA),
                         [](const auto& info) { return info.param == model::Family::GPT2 ? "GPT2" : "LLaMA"; });

TEST(ExportCliErrors, BadInputGetsAClearMessage) {
  TempDir dir;
  const auto cfg = small_config(model::Family::LLaMA, true);
  const std::string ckpt = make_checkpoint(dir, "ckpt", cfg, random_weights(cfg, 3));
  int st = 0;
  auto expect_error = [&](const std::string& args, const std::string& needle) {
    const std::string out = run_tsumugi(args, &st);
    EXPECT_NE(st, 0) << args;
    EXPECT_NE(out.find(needle), std::string::npos) << args << "\n" << out;
  };
  expect_error("export --format onnx --model " + ckpt + " -o x", "--format 'onnx' is not one of hf, gguf");
  expect_error("export --format gguf --dtype q4_0 --model " + ckpt + " -o x", "--dtype 'q4_0' is not one of");
  expect_error("export --format hf --dtype q8_0 --model " + ckpt + " -o x", "q8_0 is a GGUF type");
  expect_error("export --format gguf --max-shard-size 1GB --model " + ckpt + " -o x", "--format hf only");
  expect_error("export --format hf --max-shard-size lots --model " + ckpt + " -o x", "'lots' is not a size");
  fs::create_directories(dir.file("empty"));
  expect_error("export --format gguf --model " + dir.file("empty") + " -o x", dir.file("empty") + ": no config.json");
  expect_error("import --from-hf " + dir.file("nowhere") + " -o x", "not a model directory");
  // Unsupported architecture.
  fs::create_directories(dir.file("bert"));
  write_bytes(dir.file("bert/config.json"), R"({"model_type": "bert", "architectures": ["BertModel"]})");
  expect_error("import --from-hf " + dir.file("bert") + " -o x", "model_type 'bert' is not supported");
  // Config without weights; a shard index naming a file that is not there.
  fs::create_directories(dir.file("noweights"));
  fs::copy_file(ckpt + "/config.json", dir.file("noweights/config.json"));
  expect_error("import --from-hf " + dir.file("noweights") + " -o x", "no model.safetensors");
  write_bytes(dir.file("noweights/model.safetensors.index.json"),
              R"({"weight_map": {"model.embed_tokens.weight": "model-00001-of-00002.safetensors"}})");
  expect_error("import --from-hf " + dir.file("noweights") + " -o x", "model-00001-of-00002.safetensors");
  // A GGUF export needs the tokenizer.
  fs::create_directories(dir.file("notok"));
  fs::copy_file(ckpt + "/config.json", dir.file("notok/config.json"));
  fs::copy_file(ckpt + "/model.safetensors", dir.file("notok/model.safetensors"));
  expect_error("export --format gguf --model " + dir.file("notok") + " -o " + dir.file("x.gguf"), "no tokenizer.model");
  // A corrupt safetensors file.
  write_bytes(dir.file("notok/model.safetensors"), "garbage");
  expect_error("import --from-hf " + dir.file("notok") + " -o x", dir.file("notok/model.safetensors"));
  // An existing directory that is not an earlier export is never replaced.
  fs::create_directories(dir.file("precious"));
  write_bytes(dir.file("precious/notes.txt"), "keep me");
  expect_error("export --format hf --model " + ckpt + " -o " + dir.file("precious"), "refusing to replace");
  EXPECT_EQ(read_file(dir.file("precious/notes.txt")), "keep me");
  EXPECT_FALSE(fs::exists(dir.file("x")));
  // A tied LLaMA has no output.weight in its GGUF (llama.cpp reuses token_embd).
  run_tsumugi("export --format gguf --model " + ckpt + " -o " + dir.file("tied.gguf"));
  formats::GgufFile f(dir.file("tied.gguf"));
  EXPECT_EQ(f.find_tensor("output.weight"), nullptr);
  EXPECT_NE(f.find_tensor("token_embd.weight"), nullptr);
  // --help teaches.
  const std::string help = run_tsumugi("export --help");
  EXPECT_NE(help.find("Examples:"), std::string::npos);
  EXPECT_NE(help.find("--max-shard-size"), std::string::npos);
  EXPECT_NE(run_tsumugi("import --help").find("--from-hf"), std::string::npos);
}

// llama.cpp itself is built outside the repository (CI has none): with LLAMA_CPP_DIR set, its greedy
// continuation on our f32 GGUF must equal tsumugi's for both families (bench/llamacpp_check.sh).
TEST(ExportCliLlamaCpp, GreedyOutputEqualsTsumugis) {
  const char* llama = std::getenv("LLAMA_CPP_DIR");
  if (!llama || !*llama) GTEST_SKIP() << "set LLAMA_CPP_DIR to a llama.cpp checkout built in LLAMA_CPP_DIR/build";
  TempDir dir;
  std::string models;
  for (auto fam : {model::Family::GPT2, model::Family::LLaMA}) {
    const auto cfg = small_config(fam);
    const std::string name = fam == model::Family::GPT2 ? "gpt2" : "llama";
    // Rows past the tokenizer's vocabulary (padding) zeroed, as training decays them: tsumugi never
    // samples them, while llama.cpp's argmax looks at every row.
    auto w = random_weights(cfg, 21);
    const int n_tok = tokenizer::Tokenizer::load(shared_tokenizer()).vocab_size();
    for (const auto& p : model::parameter_layout(cfg))
      if (p.name == "transformer.wte.weight" || p.name == "lm_head.weight")
        std::fill(w.begin() + p.offset + uint64_t(n_tok) * cfg.d_model, w.begin() + p.offset + p.size, 0.0f);
    models += " " + make_checkpoint(dir, name, cfg, w);
  }
  std::string out;
  const int st = run_command("TSUMUGI=" + tsumugi_binary() + " OUT=" + dir.file("work") + " DTYPES=f32 N_PREDICT=16 " +
                                 std::string(TSUMUGI_SOURCE_DIR) + "/bench/llamacpp_check.sh" + models,
                             out);
  EXPECT_EQ(st, 0) << out;
  EXPECT_EQ(out.find("DIFFERS"), std::string::npos) << out;
  EXPECT_NE(out.find("same"), std::string::npos) << out;
}
