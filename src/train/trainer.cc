#include "train/trainer.h"

#include <fmt/format.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>

#include "backend/backend.h"
#include "formats/tensorboard.h"
#include "model/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "train/checkpoint.h"
#include "train/collective.h"
#include "train/data.h"
#include "train/report.h"
#include "util/error.h"
#include "util/interrupt.h"
#include "util/io.h"
#include "util/log.h"

namespace tsumugi::train {
namespace fs = std::filesystem;
using backend::Buf;
using backend::Kind;

double learning_rate(const TrainOptions& t, int64_t step) {
  if (t.warmup_steps > 0 && step <= t.warmup_steps) return t.lr * static_cast<double>(step) / t.warmup_steps;
  if (t.schedule == "constant") return t.lr;
  const double span = static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup_steps));
  const double progress = std::min(1.0, static_cast<double>(step - t.warmup_steps) / span);
  if (t.schedule == "linear") return t.lr + (t.min_lr - t.lr) * progress;
  return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + std::cos(M_PI * progress));
}

namespace {

uint64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

std::string format_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  long t = static_cast<long>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

// Dense matmul throughput of this backend: the denominator of MFU on CPUs (the issue's "measured
// matmul peak"), the best rate over a fixed transformer-sized problem and the run's own MLP
// projection (its tokens per micro-batch x d_model x d_ff), so a shape the library happens to run
// slower does not understate the peak and overstate MFU.
double measure_matmul_peak(backend::Backend& be, int tokens, int d_model, int d_ff) {
  double peak = 0;
  for (auto [N, IC, OC] : {std::array<int, 3>{1024, 768, 3072}, std::array<int, 3>{tokens, d_model, d_ff}}) {
    Buf a = be.alloc(static_cast<std::size_t>(N) * IC, Kind::Activation);
    Buf w = be.alloc(static_cast<std::size_t>(OC) * IC, Kind::Param);
    Buf o = be.alloc(static_cast<std::size_t>(N) * OC, Kind::Activation);
    Buf none;
    be.matmul_forward(o, a, w, none, N, IC, OC);  // warm-up (primitive creation)
    be.synchronize();
    // The best of many repetitions over about half a second: five (a few ms each) were too few
    // on a machine where anything else runs, and a low peak overstated MFU (bf16 read 100.5%).
    double best = 1e30;
    const auto start = std::chrono::steady_clock::now();
    for (int r = 0; r < 1000 && (r < 10 || std::chrono::steady_clock::now() - start < std::chrono::milliseconds(500));
         ++r) {
      auto t0 = std::chrono::steady_clock::now();
      be.matmul_forward(o, a, w, none, N, IC, OC);
      be.synchronize();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    be.free(a);
    be.free(w);
    be.free(o);
    peak = std::max(peak, 2.0 * N * IC * OC / best);
  }
  return peak;
}

class Trainer {
 public:
  Trainer(const RunConfig& cfg, const PretrainOptions& opt) : cfg_(cfg), opt_(opt) {
    if (!opt_.comm) {
      own_comm_ = make_collective();
      opt_.comm = own_comm_.get();
    }
    comm_ = opt_.comm;
    rank_ = comm_->rank();
    world_ = comm_->size();
  }

  ~Trainer() {
    // The moments live in backend memory; free them before the backend goes (the model's own
    // destructor frees its buffers, and model_ is destroyed before be_).
    if (be_) {
      if (m_.ptr) be_->free(m_);
      if (v_.ptr) be_->free(v_);
    }
  }
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  int run();

 private:
  void setup_model();
  void setup_device_comm();
  void write_checkpoint(int64_t step, double loss);
  double evaluate();
  void sample(int64_t step);
  void log_metrics(const nlohmann::json& j);
  void write_report(bool live) {
    if (rank_ == 0) write_run_report({cfg_.out_dir}, (fs::path(cfg_.out_dir) / "report.html").string(), live);
  }

  // The gradients are reduced across ranks; returns the global gradient norm before clipping.
  // Under LoRA every trainable-parameter path below sees only the adapters.
  double reduce_gradients(double* loss_sum);
  void optimizer_step(int64_t step, double clip, double lr);
  std::vector<float> gather_state(const Buf& b);  // full m or v on every rank

  RunConfig cfg_;
  PretrainOptions opt_;
  std::unique_ptr<Collective> own_comm_;
  Collective* comm_ = nullptr;
  int rank_ = 0, world_ = 1;
  bool zero_ = false;
  std::size_t shard_lo_ = 0, shard_hi_ = 0;
  std::vector<std::size_t> shard_counts_;
  std::vector<float> host_;
  std::unique_ptr<backend::Backend> be_;
  // NCCL on GPUs (declared after be_: it uses the backend's stream, so it goes first); null on the
  // CPU, where gradients go through host memory and comm_.
  std::unique_ptr<backend::DeviceComm> dev_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<BatchSource> data_;
  LoadedCheckpoint base_;  // SFT: the checkpoint being tuned (weights dropped once uploaded)
  std::unique_ptr<tokenizer::Tokenizer> tok_;
  std::unique_ptr<formats::TensorBoardWriter> tb_;
  std::unique_ptr<std::ofstream> metrics_;
  Buf m_, v_;
  bool sft_ = false, lora_ = false;
  int64_t start_step_ = 0;
  uint64_t tokens_seen_ = 0;
  int micro_ = 1, accum_ = 1;
  int bos_ = -1, eos_ = -1;
  std::string last_checkpoint_;

  // The backend's own peak (device memory on a GPU), else the process's peak RSS.
  uint64_t mem_bytes() const {
    const uint64_t dev = be_->peak_memory_bytes();
    return dev ? dev : peak_rss_bytes();
  }
};

void Trainer::setup_model() {
  model::ModelConfig mc = sft_ ? base_.config : cfg_.model;
  int tok_vocab = tok_ ? tok_->vocab_size() : 0;
  std::string resume_dir;
  if (opt_.resume) {
    auto cks = list_checkpoints(cfg_.out_dir);
    if (cks.empty()) {
      log::warn("--resume: no checkpoint under {}/checkpoints; starting from scratch", cfg_.out_dir);
    } else {
      resume_dir = cks.back();
    }
  }
  if (mc.vocab_size == 0) {
    if (!tok_vocab) fail("{}: model.vocab_size is 0 and no tokenizer is configured to take it from", cfg_.config_path);
    mc.vocab_size = model::pad_vocab(tok_vocab);
  }
  if (tok_vocab > mc.vocab_size)
    fail("{}: model.vocab_size ({}) is smaller than the tokenizer's vocabulary ({})", cfg_.config_path,
         mc.vocab_size, tok_vocab);
  mc.validate();
  cfg_.model = mc;
  if (cfg_.train.seq_len > mc.max_seq)
    fail("{}: train.seq_len ({}) exceeds the model's context ({})", cfg_.config_path, cfg_.train.seq_len, mc.max_seq);
  model_ = std::make_unique<model::Model>(mc, *be_, sft_ ? cfg_.lora : model::LoraConfig{});
  model_->set_hidden_dropout(static_cast<float>(cfg_.train.dropout));
  model_->set_recompute(cfg_.train.recompute);
  const std::size_t n = model_->num_trainable();
  zero_ = world_ > 1 && cfg_.train.zero_stage == 1;
  shard_counts_.clear();
  for (int r = 0; r < world_; ++r) {
    auto [b, e] = zero_ ? shard_range(n, world_, r) : std::pair<std::size_t, std::size_t>{0, n};
    shard_counts_.push_back(e - b);
    if (r == rank_) {
      shard_lo_ = b;
      shard_hi_ = e;
    }
  }
  // ZeRO-1: the AdamW moments exist only for this rank's slice.
  m_ = be_->alloc(std::max<std::size_t>(1, shard_hi_ - shard_lo_), Kind::OptState);
  v_ = be_->alloc(std::max<std::size_t>(1, shard_hi_ - shard_lo_), Kind::OptState);
  if (sft_) {
    model_->set_parameters(base_.weights);
    base_.weights = {};
  }
  if (!resume_dir.empty() && lora_) {
    LoadedLoraCheckpoint ck = load_lora_checkpoint(resume_dir, mc, cfg_.lora);
    model_->set_lora(ck.adapter);
    be_->upload(m_, ck.m.data() + shard_lo_, shard_hi_ - shard_lo_);
    be_->upload(v_, ck.v.data() + shard_lo_, shard_hi_ - shard_lo_);
    start_step_ = ck.state.step;
    tokens_seen_ = ck.state.tokens_seen;
    last_checkpoint_ = resume_dir;
    log::info("resuming from {} (step {})", resume_dir, start_step_);
  } else if (!resume_dir.empty()) {
    LoadedCheckpoint ck = load_checkpoint(resume_dir, true);
    auto a = model::to_hf_config(ck.config, 0, 0), b = model::to_hf_config(mc, 0, 0);
    if (a != b)
      fail("--resume: the checkpoint {} has model {} but the config asks for {}", resume_dir, ck.config.summary(),
           mc.summary());
    model_->set_parameters(ck.weights);
    // The checkpoint holds whole moments, so any number of ranks can resume it.
    be_->upload(m_, ck.m.data() + shard_lo_, shard_hi_ - shard_lo_);
    be_->upload(v_, ck.v.data() + shard_lo_, shard_hi_ - shard_lo_);
    start_step_ = ck.state.step;
    tokens_seen_ = ck.state.tokens_seen;
    last_checkpoint_ = resume_dir;
    log::info("resuming from {} (step {})", resume_dir, start_step_);
  } else if (lora_) {
    model_->init_lora(cfg_.train.seed);
  } else if (!sft_) {
    model_->init_weights(cfg_.train.seed);
  }
}

void Trainer::setup_device_comm() {
  // Every rank must take the same path: a rank whose `auto` fell back to the CPU would leave the
  // others waiting in NCCL's bootstrap.
  const std::string be_kind = be_->name().substr(0, be_->name().find(' '));
  comm_->check_same("backend", be_kind);
  // TSUMUGI_NCCL=0 keeps GPU runs on the host path (download, MPI, upload): slower, but a way to
  // tell an NCCL problem from anything else.
  const char* env = std::getenv("TSUMUGI_NCCL");
  if (env && std::string(env) == "0") {
    if (rank_ == 0) log::info("TSUMUGI_NCCL=0: gradients go through host memory and {}", comm_->kind());
    return;
  }
  backend::CommBootstrap boot;
  boot.rank = rank_;
  boot.size = world_;
  boot.broadcast_from_rank0 = [this](void* data, std::size_t n) { comm_->broadcast_from_rank0(data, n); };
  boot.abort = [this](const std::string& message) { comm_->abort(message); };
  std::string why;
  dev_ = be_->make_device_comm(boot, &why);
  if (rank_ != 0) return;
  if (dev_) log::info("gradients summed on the device with {}", dev_->describe());
  else if (be_kind != "cpu") log::info("gradients go through host memory and {}: {}", comm_->kind(), why);
}

void Trainer::log_metrics(const nlohmann::json& j) {
  if (rank_ != 0) return;
  *metrics_ << j.dump() << '\n';
  metrics_->flush();
}

void Trainer::write_checkpoint(int64_t step, double loss) {
  // Every rank takes part in downloading (ZeRO shards later); rank 0 writes.
  std::vector<float> w = model_->get_trainable();
  std::vector<float> m = gather_state(m_), v = gather_state(v_);
  if (rank_ != 0) return;
  std::string dir = (fs::path(cfg_.out_dir) / "checkpoints" / checkpoint_dir_name(step)).string();
  CheckpointState st;
  st.step = step;
  st.tokens_seen = tokens_seen_;
  st.loss = loss;
  st.run_config = cfg_.to_json();
  if (lora_) {
    std::error_code ec;
    const fs::path base = fs::absolute(cfg_.base_model, ec);
    save_lora_checkpoint(dir, cfg_.model, cfg_.lora, w, m, v, st, cfg_.tokenizer, ec ? cfg_.base_model : base.string());
  } else {
    save_checkpoint(dir, cfg_.model, w, m, v, st, cfg_.tokenizer, bos_, eos_);
  }
  last_checkpoint_ = dir;
  auto all = list_checkpoints(cfg_.out_dir);
  while (all.size() > static_cast<std::size_t>(cfg_.train.keep_checkpoints)) {
    fs::remove_all(all.front());
    all.erase(all.begin());
  }
  log::info("checkpoint {}", dir);
}

double Trainer::evaluate() {
  const int T = cfg_.train.seq_len;
  std::vector<int32_t> in(static_cast<std::size_t>(micro_) * T), tg(in.size());
  double total = 0;
  uint64_t count = 0;
  // The validation set has the same sequences whatever the rank count; rank r takes every world-th
  // one. Slots past the end (when the count is not a multiple) are padding without targets.
  const uint64_t n = data_->valid_sequences(cfg_.train);
  const uint64_t per_rank = (n + world_ - 1) / world_;
  for (uint64_t k = 0; k < per_rank; k += micro_) {
    for (int i = 0; i < micro_; ++i) {
      uint64_t idx = (k + i) * world_ + rank_;
      int32_t* ip = in.data() + static_cast<std::size_t>(i) * T;
      int32_t* tp = tg.data() + static_cast<std::size_t>(i) * T;
      if (idx < n) {
        data_->valid_sequence(idx, ip, tp);
      } else {
        std::fill(ip, ip + T, std::max(eos_, 0));
        std::fill(tp, tp + T, -1);
      }
    }
    total += model_->forward(in.data(), tg.data(), micro_, T);
    for (int32_t x : tg) count += x >= 0;
  }
  double buf[2] = {total, static_cast<double>(count)};
  comm_->allreduce_sum(buf, 2);
  return buf[0] / buf[1];
}

void Trainer::sample(int64_t step) {
  if (!tok_ || rank_ != 0) return;
  std::vector<int32_t> prompt;
  std::string prompt_text = cfg_.train.sample_prompt;
  if (!prompt_text.empty() && opt_.render_sample_prompt) prompt_text = opt_.render_sample_prompt(prompt_text);
  if (!prompt_text.empty()) tok_->encode(prompt_text, prompt);
  if (prompt.empty()) prompt.push_back(eos_ >= 0 ? eos_ : 0);  // start of a document
  model::SampleOptions so;
  so.max_tokens = std::min(cfg_.train.sample_tokens, cfg_.model.max_seq - static_cast<int>(prompt.size()));
  if (so.max_tokens <= 0) return;
  so.temperature = 0.0f;
  so.stop_id = eos_;
  so.vocab_limit = tok_->vocab_size();
  auto ids = model::generate(*model_, prompt, so);
  std::string text = tok_->decode(ids);
  log::info("sample at step {}: {}{}", step, prompt_text, text);
  nlohmann::json j = {{"step", step}, {"prompt", prompt_text}, {"completion", text}};
  std::ofstream f(fs::path(cfg_.out_dir) / "samples.jsonl", std::ios::app);
  f << j.dump() << '\n';
}

double Trainer::reduce_gradients(double* loss_sum) {
  const std::size_t n = model_->num_trainable();
  backend::Buf& grads = model_->trainable_grads();
  if (world_ == 1) return std::sqrt(be_->sum_squares(grads, n));
  comm_->allreduce_sum(loss_sum, 1);
  if (dev_) {  // in place on the device, in the gradients' own type
    if (!zero_) {
      dev_->allreduce_sum(grads, n);
      return std::sqrt(be_->sum_squares(grads, n));
    }
    dev_->reduce_scatter_sum(grads, shard_counts_);
    const std::size_t len = shard_hi_ - shard_lo_;
    double ss = len ? be_->sum_squares(be_->view(grads, shard_lo_, len), len) : 0.0;
    comm_->allreduce_sum(&ss, 1);
    return std::sqrt(ss);
  }
  host_.resize(n);
  be_->download(host_.data(), grads, n);
  if (!zero_) {
    comm_->allreduce_sum(host_.data(), n);
    be_->upload(grads, host_.data(), n);
    return std::sqrt(be_->sum_squares(grads, n));
  }
  comm_->reduce_scatter_sum(host_.data(), shard_counts_);
  const std::size_t len = shard_hi_ - shard_lo_;
  be_->upload(be_->view(grads, shard_lo_, len), host_.data() + shard_lo_, len);
  double ss = len ? be_->sum_squares(be_->view(grads, shard_lo_, len), len) : 0.0;
  comm_->allreduce_sum(&ss, 1);
  return std::sqrt(ss);
}

void Trainer::optimizer_step(int64_t step, double clip, double lr) {
  const auto& t = cfg_.train;
  backend::AdamWParams ap{static_cast<float>(lr), static_cast<float>(t.beta1), static_cast<float>(t.beta2),
                          static_cast<float>(t.eps), 0.0f, static_cast<int>(step), static_cast<float>(clip)};
  // Each tensor's part of this rank's slice, relative to the slice, in one call.
  std::vector<backend::AdamWSegment> segments;
  for (const auto& p : model_->trainable_layout()) {
    const std::size_t a = std::max<std::size_t>(p.offset, shard_lo_);
    const std::size_t b = std::min<std::size_t>(p.offset + p.size, shard_hi_);
    if (a >= b) continue;
    segments.push_back({a - shard_lo_, b - a, p.decay ? static_cast<float>(t.weight_decay) : 0.0f});
  }
  const std::size_t len = shard_hi_ - shard_lo_;
  if (!segments.empty())
    be_->adamw_update_segments(be_->view(model_->trainable_master(), shard_lo_, len),
                               be_->view(model_->trainable_params(), shard_lo_, len),
                               be_->view(model_->trainable_grads(), shard_lo_, len), m_, v_, segments, ap);
  if (zero_ && dev_) {  // every rank gets every slice's updated master weights, then its compute copy
    const std::size_t n = model_->num_trainable();
    dev_->allgather(model_->trainable_master(), shard_counts_);
    if (model_->trainable_params().ptr != model_->trainable_master().ptr)
      be_->copy(model_->trainable_params(), model_->trainable_master(), n);
  } else if (zero_) {
    const std::size_t n = model_->num_trainable();
    host_.resize(n);
    be_->download(host_.data(), model_->trainable_master(), n);
    comm_->allgather(host_.data(), shard_counts_);
    model_->set_trainable(host_);
  }
}

std::vector<float> Trainer::gather_state(const Buf& b) {
  const std::size_t n = model_->num_trainable();
  std::vector<float> full(n, 0.0f);
  be_->download(full.data() + shard_lo_, b, shard_hi_ - shard_lo_);
  if (zero_) comm_->allgather(full.data(), shard_counts_);
  return full;
}

int Trainer::run() {
  const auto& t = cfg_.train;
  const int T = t.seq_len;
  if (t.batch_size % world_ != 0)
    fail("train.batch_size ({}) must be a multiple of the number of ranks ({})", t.batch_size, world_);
  const int per_rank = t.batch_size / world_;
  micro_ = t.micro_batch_size > 0 ? t.micro_batch_size : per_rank;
  if (per_rank % micro_ != 0)
    fail("train.micro_batch_size ({}) must divide the per-rank batch ({} = train.batch_size {} / {} ranks)", micro_,
         per_rank, t.batch_size, world_);
  accum_ = per_rank / micro_;

  comm_->check_same("run configuration", cfg_.to_json().dump());
  if (rank_ == 0) fs::create_directories(cfg_.out_dir);
  sft_ = cfg_.kind == RunKind::Sft;
  lora_ = sft_ && cfg_.lora.r > 0;
  if (sft_) {
    base_ = load_checkpoint(cfg_.base_model, false);
    if (cfg_.tokenizer.empty()) {
      if (base_.tokenizer_path.empty())
        fail("{}: the checkpoint {} has no tokenizer.model; set tokenizer = FILE", cfg_.config_path, cfg_.base_model);
      cfg_.tokenizer = base_.tokenizer_path;
    }
  }
  if (!cfg_.tokenizer.empty()) {
    tok_ = std::make_unique<tokenizer::Tokenizer>(tokenizer::Tokenizer::load(cfg_.tokenizer));
    eos_ = tok_->piece_to_id("<EOD>");
    if (tok_->is_unknown(eos_)) eos_ = tok_->eos_id();
    bos_ = tok_->bos_id() >= 0 ? tok_->bos_id() : eos_;
  }
  be_ = opt_.make_backend ? opt_.make_backend(cfg_.backend) : backend::make_backend(cfg_.backend);
  if (world_ > 1) setup_device_comm();
  setup_model();
  if (opt_.make_data) data_ = opt_.make_data(cfg_, tok_.get(), eos_);
  else data_ = std::make_unique<WindowSampler>(cfg_.train_data, cfg_.valid_data, cfg_.valid_fraction, T, t.seed);
  data_->check_vocabulary(cfg_.model.vocab_size);
  const bool have_valid = t.eval_interval > 0 && data_->valid_sequences(t) > 0;

  const std::size_t n = model_->num_parameters();
  // 2 FLOPs per weight and token forward, 4 backward (2 with frozen weights: no weight gradients).
  const double weight_flops = lora_ ? 4.0 : 6.0;
  const double flops_per_token =
      weight_flops * static_cast<double>(n - (cfg_.model.family == model::Family::GPT2
                                                   ? static_cast<std::size_t>(cfg_.model.max_seq) * cfg_.model.d_model
                                                   : 0)) +
      6.0 * cfg_.model.n_layer * cfg_.model.d_model * static_cast<double>(T);
  double peak = be_->nominal_peak_flops();
  const char* peak_kind = "nominal bf16 peak";
  if (peak <= 0) {
    peak = measure_matmul_peak(*be_, micro_ * T, cfg_.model.d_model, cfg_.model.d_ff);
    peak_kind = "measured matmul peak";
  }
  if (rank_ == 0) {
    log::info("model: {}", cfg_.model.summary());
    log::info("backend: {}; {}: {:.1f} GFLOP/s", be_->name(), peak_kind, peak / 1e9);
    log::info("data: {}; {} sequences x {} tokens per step ({} ranks x {} micro x {} accumulation)",
              data_->describe(), t.batch_size, T, world_, micro_, accum_);
    if (lora_)
      log::info("LoRA: r={} alpha={} dropout={} on {} modules; {} trainable parameters ({:.2f}% of {}), base frozen",
                cfg_.lora.r, cfg_.lora.alpha, cfg_.lora.dropout, model_->lora_modules().size(),
                model_->num_trainable(), 100.0 * model_->num_trainable() / n, n);
    nlohmann::json rc = cfg_.to_json();
    rc["parameters"] = n;
    rc["trainable_parameters"] = model_->num_trainable();
    write_file_atomic((fs::path(cfg_.out_dir) / "config.json").string(), rc.dump(2) + "\n");
  }

  // metrics.jsonl: a resumed run drops the lines after its checkpoint, so the file is one curve.
  const fs::path metrics_path = fs::path(cfg_.out_dir) / "metrics.jsonl";
  if (rank_ == 0) {
    if (fs::exists(metrics_path)) {
      std::string kept;
      if (start_step_ > 0) {
        std::ifstream in(metrics_path);
        std::string line;
        while (std::getline(in, line)) {
          try {
            auto j = nlohmann::json::parse(line);
            if (j.value("step", int64_t{0}) <= start_step_) kept += line + "\n";
          } catch (const nlohmann::json::parse_error&) {
            // a torn last line from an interrupted writer
          }
        }
      }
      write_file_atomic(metrics_path.string(), kept);
    }
    metrics_ = std::make_unique<std::ofstream>(metrics_path, std::ios::app);
    tb_ = std::make_unique<formats::TensorBoardWriter>((fs::path(cfg_.out_dir) / "tensorboard").string());
  }

  install_interrupt_handler();
  // This rank's sequences of one step, all micro-batches: counted before the first backward pass
  // so every token's gradient has the step's final normalisation.
  const std::size_t micro_len = static_cast<std::size_t>(micro_) * T;
  std::vector<int32_t> in(micro_len * accum_), tg(in.size());
  auto t_start = std::chrono::steady_clock::now();
  double last_loss = 0;
  int64_t step = start_step_;
  double window_time = 0;
  uint64_t window_tokens = 0;

  // Tuning starts from a trained model: its held-out loss before the first step is the baseline
  // the run is judged against (metrics.jsonl step 0).
  if (sft_ && have_valid && start_step_ == 0) {
    const double vl = evaluate();
    log_metrics({{"step", 0}, {"val_loss", vl}});
    if (tb_) tb_->add_scalars({{"valid/loss", static_cast<float>(vl)}}, 0);
    if (rank_ == 0) log::info("step 0 (the base model): validation loss {:.4f}", vl);
  }
  // A step's time runs from the previous step's gradient reduction to this one's: the host waits
  // for the device there anyway, and the optimizer update then runs on the device while the host
  // logs and prepares the next batch (waiting for it at the end of each step left a GPU idle
  // during that host work). After evaluation, checkpoints and samples, which are not training,
  // the clock restarts at the next step.
  using Clock = std::chrono::steady_clock;
  std::optional<Clock::time_point> mark;
  while (step < t.steps) {
    ++step;
    if (!mark) mark = Clock::now();
    model_->zero_grad();
    double loss_sum = 0;
    for (int a = 0; a < accum_; ++a)
      for (int i = 0; i < micro_; ++i) {
        // Global sequence index: step, then rank, then position within the rank's batch.
        uint64_t idx = static_cast<uint64_t>(step - 1) * t.batch_size +
                       static_cast<uint64_t>(rank_) * per_rank + static_cast<uint64_t>(a) * micro_ + i;
        const std::size_t at = static_cast<std::size_t>(a) * micro_len + static_cast<std::size_t>(i) * T;
        data_->train_sequence(idx, in.data() + at, tg.data() + at);
      }
    // The loss is the mean over the step's target tokens (all of them in pretraining; the response
    // tokens across every rank in SFT).
    double targets = static_cast<double>(t.batch_size) * T;
    if (!data_->dense_targets()) {
      targets = 0;
      for (int32_t x : tg) targets += x >= 0;
      if (world_ > 1) comm_->allreduce_sum(&targets, 1);
      targets = std::max(targets, 1.0);
    }
    const float loss_scale = data_->dense_targets() ? 1.0f / (static_cast<float>(t.batch_size) * T)
                                                    : static_cast<float>(1.0 / targets);
    for (int a = 0; a < accum_; ++a) {
      const uint64_t first = static_cast<uint64_t>(rank_) * per_rank + static_cast<uint64_t>(a) * micro_;
      if (lora_ || cfg_.train.dropout > 0) model_->set_dropout_seed(splitmix64(t.seed ^ splitmix64(static_cast<uint64_t>(step))), first * T);
      const std::size_t at = static_cast<std::size_t>(a) * micro_len;
      loss_sum += model_->forward_backward(in.data() + at, tg.data() + at, micro_, T, loss_scale);
    }
    const double norm = reduce_gradients(&loss_sum);
    const auto reduced = Clock::now();
    const double dt = std::chrono::duration<double>(reduced - *mark).count();
    mark = reduced;
    const double loss = loss_sum / targets;
    if (!std::isfinite(loss) || !std::isfinite(norm)) {
      fail("the loss became {} at step {} (gradient norm {}); weights were not updated. The last good checkpoint is "
           "{}. Lower train.lr, raise train.warmup_steps or check the data, then --resume.",
           loss, step, norm, last_checkpoint_.empty() ? "(none yet)" : last_checkpoint_);
    }
    const double clip = t.grad_clip > 0 && norm > t.grad_clip ? t.grad_clip / (norm + 1e-6) : 1.0;
    const double lr = learning_rate(t, step);
    optimizer_step(step, clip, lr);
    const uint64_t step_tokens = static_cast<uint64_t>(t.batch_size) * T;
    tokens_seen_ += step_tokens;
    last_loss = loss;
    window_time += dt;
    window_tokens += step_tokens;
    const double tps = step_tokens / dt;
    const double mfu = tps * flops_per_token / (peak * world_);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
    nlohmann::json j = {{"step", step},         {"loss", loss},     {"lr", lr},
                        {"grad_norm", norm},    {"tokens_per_s", tps}, {"mfu", mfu},
                        {"mem_bytes", mem_bytes()}, {"elapsed_s", elapsed}, {"tokens", tokens_seen_}};
    std::vector<std::pair<std::string, float>> scalars = {{"train/loss", static_cast<float>(loss)},
                                                          {"train/lr", static_cast<float>(lr)},
                                                          {"train/grad_norm", static_cast<float>(norm)},
                                                          {"perf/tokens_per_s", static_cast<float>(tps)},
                                                          {"perf/mfu", static_cast<float>(mfu)}};
    if (have_valid && (step % t.eval_interval == 0 || step == t.steps)) {
      double vl = evaluate();
      mark.reset();
      j["val_loss"] = vl;
      scalars.emplace_back("valid/loss", static_cast<float>(vl));
      if (rank_ == 0) log::info("step {}: validation loss {:.4f}", step, vl);
    }
    log_metrics(j);
    if (tb_) {
      tb_->add_scalars(scalars, step);
      tb_->flush();
    }
    if (rank_ == 0 && (step % t.log_interval == 0 || step == t.steps)) {
      const double avg = window_tokens / window_time;
      const double eta = (t.steps - step) * step_tokens / avg;
      log::info("step {}/{} | loss {:.4f} | lr {:.2e} | norm {:.3f} | {:.0f} tok/s | MFU {:.1f}% | ETA {}", step,
                t.steps, loss, lr, norm, avg, 100.0 * avg * flops_per_token / (peak * world_),
                format_duration(eta));
      window_time = 0;
      window_tokens = 0;
    }
    if (t.sample_interval > 0 && step % t.sample_interval == 0 && step != t.steps) {
      sample(step);
      mark.reset();
    }
    const bool pause = t.stop_after > 0 && step == t.stop_after && step < t.steps;
    bool stop = interrupted();
    if (world_ > 1) {  // every rank must stop at the same step, whichever saw the signal
      double any = stop ? 1.0 : 0.0;
      comm_->allreduce_sum(&any, 1);
      stop = any > 0;
    }
    if (stop || pause || step == t.steps || (t.checkpoint_interval > 0 && step % t.checkpoint_interval == 0)) {
      write_checkpoint(step, loss);
      mark.reset();
    }
    if (t.report_interval > 0 && (step % t.report_interval == 0) && step != t.steps) {
      write_report(true);
      mark.reset();
    }
    if (stop || pause) {
      if (stop) log::warn("interrupted at step {}: checkpoint written; continue with --resume", step);
      else log::info("stopped after step {} as train.stop_after asks; continue with --resume", step);
      write_report(false);
      return stop ? 130 : 0;
    }
  }
  write_report(false);
  if (rank_ == 0) {
    if (start_step_ < t.steps) sample(step);
    log::info("done: {} steps, final loss {:.4f}; checkpoint {}; report {}/report.html", step, last_loss,
              last_checkpoint_, cfg_.out_dir);
  }
  return 0;
}

}  // namespace

int run_training(const RunConfig& cfg, const PretrainOptions& opt) {
  Trainer t(cfg, opt);
  return t.run();
}

int run_pretrain(const RunConfig& cfg, const PretrainOptions& opt) { return run_training(cfg, opt); }

}  // namespace tsumugi::train
