#include "server/server.h"

// Debian's cpp-httplib is a compiled library (libcpp-httplib.so, built with TLS, zlib and brotli): its header
// must see the same switches or the classes' layouts differ from the library's (its pkg-config file sets them).
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
#define CPPHTTPLIB_OPENSSL_SUPPORT
#endif
#ifndef CPPHTTPLIB_ZLIB_SUPPORT
#define CPPHTTPLIB_ZLIB_SUPPORT
#endif
#ifndef CPPHTTPLIB_BROTLI_SUPPORT
#define CPPHTTPLIB_BROTLI_SUPPORT
#endif
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <fmt/format.h>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "core/error.h"
#include "infer/engine.h"
#include "infer/sampler.h"
#include "infer/text_stream.h"

namespace txs {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Invalid UTF-8 (a token cut inside a character) is replaced rather than thrown on.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// A request the client got wrong: answered with `status` and an OpenAI-style error object.
struct HttpError {
  int status;
  std::string message;
};
[[noreturn]] void reject(int status, std::string message) { throw HttpError{status, std::move(message)}; }

std::string error_body(int status, const std::string& message) {
  json e;
  e["error"] = {{"message", message},
                {"type", status >= 500 ? "server_error" : "invalid_request_error"},
                {"code", status}};
  return dump(e);
}

struct TokenOut {
  int32_t id = 0;
  std::string text;  // bytes released for display with this token (may be empty: held back)
  float logprob = std::numeric_limits<float>::quiet_NaN();  // NaN: none (the first echoed prompt token)
  std::vector<std::pair<int32_t, float>> top;               // the most likely alternatives, best first
};

// One prompt of a request. Inputs are fixed at submission; outputs are appended by the scheduler under mu.
struct Job {
  std::vector<int32_t> prompt;
  int64_t max_tokens = 16;
  SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<std::string> stops;
  bool echo = false;
  int logprobs = -1;  // −1: none; k ≥ 0: log-probabilities with the k best alternatives

  std::mutex mu;
  std::condition_variable cv;
  std::vector<TokenOut> prompt_out;  // echo + logprobs: the prompt tokens with their log-probabilities
  std::vector<TokenOut> out;         // generated tokens
  std::string tail;                  // text released at the end (held-back bytes)
  std::string finish_reason, error;
  bool done = false;
  std::atomic<bool> cancelled{false};
};

struct Metrics {
  std::atomic<int64_t> requests{0}, rejected{0}, prompt_tokens{0}, generated_tokens{0}, decode_steps{0};
  std::atomic<int64_t> active{0}, active_state_bytes{0};
  std::mutex mu;
  double prefill_seconds = 0, decode_seconds = 0;
};

// log-softmax of one row in double; the k best (id, logprob) pairs when k > 0.
double log_normalizer(const float* logits, int64_t V) {
  double mx = -1e300, sum = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(logits[i]));
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
  return mx + std::log(sum);
}
std::vector<std::pair<int32_t, float>> top_k(const float* logits, int64_t V, int k, double lse) {
  std::vector<int32_t> order(static_cast<size_t>(V));
  for (int64_t i = 0; i < V; ++i) order[size_t(i)] = int32_t(i);
  const int64_t kk = std::min<int64_t>(k, V);
  std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  std::vector<std::pair<int32_t, float>> r;
  for (int64_t i = 0; i < kk; ++i) r.push_back({order[size_t(i)], float(double(logits[order[size_t(i)]]) - lse)});
  return r;
}

// The decode loop: owns the engine; admits queued jobs between steps and decodes all active ones together.
class Scheduler {
 public:
  Scheduler(Model& model, const Tokenizer* tok, int64_t max_batch, Metrics& metrics)
      : engine_(model), tok_(tok), max_batch_(max_batch), metrics_(metrics) {
    thread_ = std::thread([this] { loop(); });
  }
  ~Scheduler() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void submit(std::shared_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> l(mu_);
      queue_.push_back(std::move(job));
    }
    cv_.notify_all();
  }
  const ModelConfig& config() const { return engine_.config(); }

 private:
  struct Active {
    std::shared_ptr<Job> job;
    SequenceState seq;
    Rng rng;
    std::optional<TextStream> text;
    int32_t last = 0;
    bool finished = false;
  };

  void loop() {
    const int64_t V = engine_.config().vocab_size;
    std::vector<float> logits;
    while (true) {
      std::vector<std::shared_ptr<Job>> admitted;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
        if (stopping_) break;
        while (!queue_.empty() && int64_t(active_.size() + admitted.size()) < max_batch_) {
          admitted.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      }
      for (auto& job : admitted) start(job);
      drop_finished();
      if (active_.empty()) continue;
      // One step for every active sequence: its last token in, next-token logits out.
      std::vector<SequenceState*> seqs;
      std::vector<int32_t> ids;
      for (auto& a : active_) seqs.push_back(&a->seq), ids.push_back(a->last);
      logits.resize(seqs.size() * size_t(V));
      const auto t0 = Clock::now();
      try {
        engine_.decode(seqs, ids.data(), logits.data());
      } catch (const std::exception& e) {
        for (auto& a : active_) finish(*a, "", e.what());
        drop_finished();
        continue;
      }
      {
        std::lock_guard<std::mutex> l(metrics_.mu);
        metrics_.decode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
      }
      metrics_.decode_steps += 1;
      for (size_t i = 0; i < active_.size(); ++i) emit(*active_[i], logits.data() + i * size_t(V));
      drop_finished();
    }
    for (auto& a : active_) finish(*a, "", "server shutting down");
  }

  void start(const std::shared_ptr<Job>& job) {
    auto a = std::make_unique<Active>();
    a->job = job;
    a->rng.reseed(job->seed);
    if (tok_) a->text.emplace(*tok_, job->stops);
    const int64_t V = engine_.config().vocab_size, n = int64_t(job->prompt.size());
    std::vector<float> logits(static_cast<size_t>(V));
    const auto t0 = Clock::now();
    try {
      a->seq = engine_.new_sequence();
      if (job->echo && job->logprobs >= 0) {
        // Every position's logits: the log-probability of the next prompt token and the best alternatives.
        std::vector<TokenOut> p(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) p[size_t(i)].id = job->prompt[size_t(i)];
        engine_.prefill_each(a->seq, job->prompt.data(), n, [&](int64_t i, const float* row) {
          if (i + 1 < n) {
            const double lse = log_normalizer(row, V);
            TokenOut& t = p[size_t(i + 1)];
            t.logprob = float(double(row[t.id]) - lse);
            t.top = top_k(row, V, job->logprobs, lse);
          } else {
            std::copy(row, row + V, logits.begin());
          }
        });
        std::lock_guard<std::mutex> l(job->mu);
        job->prompt_out = std::move(p);
      } else {
        engine_.prefill(a->seq, job->prompt.data(), n, nullptr, nullptr, logits.data());
      }
    } catch (const std::exception& e) {
      finish(*a, "", e.what());
      return;
    }
    {
      std::lock_guard<std::mutex> l(metrics_.mu);
      metrics_.prefill_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    metrics_.prompt_tokens += n;
    if (job->max_tokens == 0) {
      finish(*a, "length", "");
      return;
    }
    emit(*a, logits.data());
    if (!a->finished) active_.push_back(std::move(a));
  }

  // Samples the next token from `logits`, publishes it, and decides whether the sequence goes on.
  void emit(Active& a, const float* logits) {
    Job& job = *a.job;
    if (job.cancelled) {
      finish(a, "cancelled", "");
      return;
    }
    const int64_t V = engine_.config().vocab_size;
    const int32_t id = sample_token(logits, V, job.sampling, a.rng);
    const int32_t eos = tok_ ? tok_->eos_id() : -1;
    metrics_.generated_tokens += 1;
    if (id == eos) {  // end of text: not shown, finishes as a stop
      finish(a, "stop", "");
      return;
    }
    TokenOut t;
    t.id = id;
    if (job.logprobs >= 0) {
      const double lse = log_normalizer(logits, V);
      t.logprob = float(double(logits[id]) - lse);
      t.top = top_k(logits, V, job.logprobs, lse);
    }
    if (a.text) t.text = a.text->push(id);
    std::string reason;
    if (a.text && a.text->stopped()) reason = "stop";
    else if (int64_t(job.out.size()) + 1 >= job.max_tokens) reason = "length";
    {
      std::lock_guard<std::mutex> l(job.mu);
      job.out.push_back(std::move(t));
    }
    a.last = id;
    if (!reason.empty()) finish(a, reason, "");
    else job.cv.notify_all();
  }

  void finish(Active& a, const std::string& reason, const std::string& error) {
    Job& job = *a.job;
    std::string tail = a.text && error.empty() ? a.text->finish() : "";
    {
      std::lock_guard<std::mutex> l(job.mu);
      job.tail = std::move(tail);
      job.finish_reason = reason;
      job.error = error;
      job.done = true;
    }
    a.finished = true;
    job.cv.notify_all();
  }

  void drop_finished() {
    std::erase_if(active_, [](const std::unique_ptr<Active>& a) { return a->finished; });
    int64_t bytes = 0;
    for (auto& a : active_) bytes += int64_t(a->seq.bytes());
    metrics_.active = int64_t(active_.size());
    metrics_.active_state_bytes = bytes;
  }

  InferenceEngine engine_;
  const Tokenizer* tok_;
  int64_t max_batch_;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Active>> active_;  // touched by the loop thread only
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------------------
// Request parsing. Every wrong field is a 400 naming it.

std::vector<int32_t> parse_ids(const json& arr, int64_t vocab) {
  std::vector<int32_t> ids;
  for (auto& v : arr) {
    if (!v.is_number_integer()) reject(400, "'prompt' token ids must be integers");
    const int64_t id = v.get<int64_t>();
    if (id < 0 || id >= vocab) reject(400, fmt::format("prompt token id {} is outside the vocabulary [0, {})", id, vocab));
    ids.push_back(int32_t(id));
  }
  return ids;
}

struct Parsed {
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::optional<std::string>> prompt_texts;  // the original text of string prompts
  bool stream = false;
};

Parsed parse_completion(const json& body, Job& proto, const Tokenizer* tok, const ModelConfig& c) {
  if (!body.is_object()) reject(400, "the request body must be a JSON object");
  Parsed p;
  if (!body.contains("prompt")) reject(400, "missing field 'prompt'");
  const json& pr = body["prompt"];
  auto encode = [&](const std::string& s) {
    if (!tok) reject(400, "this server has no tokenizer: send the prompt as token ids");
    try {
      return tok->encode(s);
    } catch (const Error& e) {
      reject(400, std::string("prompt: ") + e.what());
    }
  };
  if (pr.is_string()) {
    p.prompts.push_back(encode(pr.get<std::string>()));
    p.prompt_texts.push_back(pr.get<std::string>());
  } else if (pr.is_array() && !pr.empty() && pr[0].is_number()) {
    p.prompts.push_back(parse_ids(pr, c.vocab_size));
    p.prompt_texts.push_back(std::nullopt);
  } else if (pr.is_array() && !pr.empty()) {
    for (auto& e : pr) {
      if (e.is_string()) {
        p.prompts.push_back(encode(e.get<std::string>()));
        p.prompt_texts.push_back(e.get<std::string>());
      } else if (e.is_array()) {
        p.prompts.push_back(parse_ids(e, c.vocab_size));
        p.prompt_texts.push_back(std::nullopt);
      } else {
        reject(400, "'prompt' must be a string, an array of token ids, or an array of those");
      }
    }
  } else {
    reject(400, "'prompt' must be a string, an array of token ids, or an array of those");
  }
  if (p.prompts.size() > 64) reject(400, "at most 64 prompts per request");
  for (auto& ids : p.prompts) {
    if (ids.empty()) reject(400, "the prompt is empty");
    if (int64_t(ids.size()) > c.max_position_embeddings)
      reject(400, fmt::format("the prompt has {} tokens, more than the context length {}", ids.size(),
                              c.max_position_embeddings));
  }
  auto get_int = [&](const char* k, int64_t lo, int64_t hi, int64_t dflt) -> int64_t {
    if (!body.contains(k) || body[k].is_null()) return dflt;
    if (!body[k].is_number_integer()) reject(400, fmt::format("'{}' must be an integer", k));
    const int64_t v = body[k].get<int64_t>();
    if (v < lo || v > hi) reject(400, fmt::format("'{}' must be in [{}, {}]", k, lo, hi));
    return v;
  };
  auto get_num = [&](const char* k, double lo, double hi, double dflt) -> double {
    if (!body.contains(k) || body[k].is_null()) return dflt;
    if (!body[k].is_number()) reject(400, fmt::format("'{}' must be a number", k));
    const double v = body[k].get<double>();
    if (!(v >= lo && v <= hi)) reject(400, fmt::format("'{}' must be in [{}, {}]", k, lo, hi));
    return v;
  };
  auto get_bool = [&](const char* k) -> bool {
    if (!body.contains(k) || body[k].is_null()) return false;
    if (!body[k].is_boolean()) reject(400, fmt::format("'{}' must be true or false", k));
    return body[k].get<bool>();
  };
  proto.max_tokens = get_int("max_tokens", 0, 1 << 20, 16);
  proto.sampling.temperature = get_num("temperature", 0, 100, 1.0);
  proto.sampling.top_p = get_num("top_p", 1e-9, 1, 1.0);
  proto.sampling.top_k = get_int("top_k", 0, c.vocab_size, 0);
  proto.seed = uint64_t(get_int("seed", 0, std::numeric_limits<int64_t>::max(), 0));
  proto.logprobs = int(get_int("logprobs", 0, 20, -1));
  proto.echo = get_bool("echo");
  p.stream = get_bool("stream");
  if (get_int("n", 1, 1, 1) != 1) reject(400, "only n = 1 is supported");
  if (body.contains("stop") && !body["stop"].is_null()) {
    const json& s = body["stop"];
    if (s.is_string()) proto.stops.push_back(s.get<std::string>());
    else if (s.is_array() && s.size() <= 4) {
      for (auto& e : s) {
        if (!e.is_string()) reject(400, "'stop' must be a string or an array of up to 4 strings");
        proto.stops.push_back(e.get<std::string>());
      }
    } else {
      reject(400, "'stop' must be a string or an array of up to 4 strings");
    }
    if (!proto.stops.empty() && !tok) reject(400, "'stop' needs a tokenizer");
  }
  return p;
}

// ---------------------------------------------------------------------------------------------------------

class Server {
 public:
  Server(Model& model, const Tokenizer* tok, const ServerOptions& o)
      : tok_(tok), opt_(o), scheduler_(model, tok, o.max_batch, metrics_), started_(Clock::now()) {
    created_ = std::time(nullptr);
    http_.new_task_queue = [n = o.http_threads] { return new httplib::ThreadPool(size_t(std::max(2, n))); };
    http_.set_payload_max_length(o.max_body_bytes);
    http_.set_error_handler([](const httplib::Request&, httplib::Response& res) {
      if (res.body.empty()) {
        const char* what = res.status == 404 ? "no such endpoint"
                           : res.status == 413 ? "the request body is too large"
                           : res.status == 405 ? "method not allowed" : "bad request";
        res.set_content(error_body(res.status, what), "application/json");
      }
    });
    http_.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "internal error";
      try {
        if (ep) std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      res.status = 500;
      res.set_content(error_body(500, what), "application/json");
    });
    http_.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"status":"ok"})", "application/json");
    });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", opt_.model_name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "transxssm"},
                {"context_length", scheduler_.config().max_position_embeddings}};
      res.set_content(dump({{"object", "list"}, {"data", json::array({m})}}), "application/json");
    });
    http_.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics_text(), "text/plain; version=0.0.4");
    });
    http_.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
      completions(req, res);
    });
  }

  httplib::Server& http() { return http_; }

 private:
  std::string token_text(int32_t id) const {
    if (!tok_) return std::to_string(id);
    try {
      return tok_->decode({id});
    } catch (const Error&) {
      return "";
    }
  }

  json top_json(const std::vector<std::pair<int32_t, float>>& top) const {
    json o = json::object();
    for (auto& [id, lp] : top) {
      const std::string k = token_text(id);
      if (!o.contains(k)) o[k] = lp;
    }
    return o;
  }

  // Appends tokens to an OpenAI logprobs object; offset counts text bytes so far.
  void add_logprobs(json& lp, const std::vector<TokenOut>& toks, size_t& offset) const {
    for (auto& t : toks) {
      const std::string s = token_text(t.id);
      lp["tokens"].push_back(s);
      lp["token_logprobs"].push_back(std::isnan(t.logprob) ? json(nullptr) : json(t.logprob));
      lp["top_logprobs"].push_back(std::isnan(t.logprob) ? json(nullptr) : top_json(t.top));
      lp["text_offset"].push_back(offset);
      offset += s.size();
    }
  }
  static json empty_logprobs() {
    return {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
            {"text_offset", json::array()}};
  }

  std::string prompt_text(const Parsed& p, size_t i) const {
    if (p.prompt_texts[i]) return *p.prompt_texts[i];
    if (!tok_) return "";
    try {
      return tok_->decode(p.prompts[i]);
    } catch (const Error&) {
      return "";
    }
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    metrics_.requests += 1;
    std::vector<std::shared_ptr<Job>> jobs;
    Parsed parsed;
    try {
      json body;
      try {
        body = json::parse(req.body);
      } catch (const json::parse_error& e) {
        reject(400, fmt::format("invalid JSON: {}", e.what()));
      }
      Job proto;
      parsed = parse_completion(body, proto, tok_, scheduler_.config());
      for (auto& ids : parsed.prompts) {
        auto j = std::make_shared<Job>();
        j->prompt = ids;
        j->max_tokens = proto.max_tokens, j->sampling = proto.sampling, j->seed = proto.seed;
        j->stops = proto.stops, j->echo = proto.echo, j->logprobs = proto.logprobs;
        jobs.push_back(std::move(j));
      }
    } catch (const HttpError& e) {
      metrics_.rejected += 1;
      res.status = e.status;
      res.set_content(error_body(e.status, e.message), "application/json");
      return;
    }
    for (auto& j : jobs) scheduler_.submit(j);
    const std::string id = fmt::format("cmpl-{}", next_id_++);
    if (parsed.stream) {
      stream(res, std::move(jobs), std::move(parsed), id);
      return;
    }
    json choices = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      Job& j = *jobs[i];
      std::unique_lock<std::mutex> l(j.mu);
      j.cv.wait(l, [&] { return j.done; });
      if (!j.error.empty()) {
        res.status = 500;
        res.set_content(error_body(500, j.error), "application/json");
        return;
      }
      std::string text = j.echo ? prompt_text(parsed, i) : "";
      for (auto& t : j.out) text += t.text;
      text += j.tail;
      json lp = nullptr;
      if (j.logprobs >= 0) {
        lp = empty_logprobs();
        size_t offset = 0;
        if (j.echo) add_logprobs(lp, j.prompt_out, offset);
        add_logprobs(lp, j.out, offset);
      }
      choices.push_back({{"index", i}, {"text", text}, {"logprobs", lp}, {"finish_reason", j.finish_reason}});
      prompt_tokens += int64_t(j.prompt.size());
      completion_tokens += int64_t(j.out.size());
    }
    json out = {{"id", id},
                {"object", "text_completion"},
                {"created", std::time(nullptr)},
                {"model", opt_.model_name},
                {"choices", choices},
                {"usage",
                 {{"prompt_tokens", prompt_tokens},
                  {"completion_tokens", completion_tokens},
                  {"total_tokens", prompt_tokens + completion_tokens}}}};
    res.set_content(dump(out), "application/json");
  }

  // Server-sent events: one `data: {chunk}` per token (prompts in order), a last chunk per prompt with its
  // finish_reason, then `data: [DONE]`.
  void stream(httplib::Response& res, std::vector<std::shared_ptr<Job>> jobs, Parsed parsed, std::string id) {
    struct Cursor {
      size_t job = 0, sent = 0;
      bool started = false;
    };
    auto cur = std::make_shared<Cursor>();
    auto shared_jobs = std::make_shared<std::vector<std::shared_ptr<Job>>>(std::move(jobs));
    auto p = std::make_shared<Parsed>(std::move(parsed));
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, cur, shared_jobs, p, id](size_t, httplib::DataSink& sink) -> bool {
          auto send = [&](const json& chunk) {
            const std::string s = "data: " + dump(chunk) + "\n\n";
            return sink.write(s.data(), s.size());
          };
          auto chunk = [&](size_t index, const std::string& text, const json& lp, const json& reason) {
            return json{{"id", id},
                        {"object", "text_completion"},
                        {"created", std::time(nullptr)},
                        {"model", opt_.model_name},
                        {"choices", json::array({{{"index", index}, {"text", text}, {"logprobs", lp},
                                                  {"finish_reason", reason}}})}};
          };
          if (cur->job == shared_jobs->size()) {
            const std::string done = "data: [DONE]\n\n";
            sink.write(done.data(), done.size());
            sink.done();
            return true;
          }
          Job& j = *(*shared_jobs)[cur->job];
          std::vector<TokenOut> fresh, prompt_toks;
          bool done = false;
          std::string tail, reason, error;
          {
            std::unique_lock<std::mutex> l(j.mu);
            j.cv.wait_for(l, std::chrono::milliseconds(200), [&] { return j.done || j.out.size() > cur->sent; });
            fresh.assign(j.out.begin() + long(cur->sent), j.out.end());
            cur->sent = j.out.size();
            done = j.done, tail = j.tail, reason = j.finish_reason, error = j.error;
            if (!cur->started && (done || !fresh.empty())) prompt_toks = j.prompt_out;
          }
          if (!error.empty()) {
            const std::string s = "data: " + error_body(500, error) + "\n\n";
            sink.write(s.data(), s.size());
            sink.done();
            return true;
          }
          size_t offset = 0;  // text offsets restart per chunk in streaming
          if (!cur->started && (done || !fresh.empty())) {
            cur->started = true;
            if (j.echo) {
              json lp = nullptr;
              if (j.logprobs >= 0) {
                lp = empty_logprobs();
                add_logprobs(lp, prompt_toks, offset);
              }
              if (!send(chunk(cur->job, prompt_text(*p, cur->job), lp, nullptr))) return false;
            }
          }
          for (auto& t : fresh) {
            json lp = nullptr;
            if (j.logprobs >= 0) {
              lp = empty_logprobs();
              add_logprobs(lp, {t}, offset);
            }
            if (!send(chunk(cur->job, t.text, lp, nullptr))) return false;
          }
          if (done) {
            if (!send(chunk(cur->job, tail, nullptr, reason))) return false;
            cur->job += 1, cur->sent = 0, cur->started = false;
          }
          return true;
        },
        [shared_jobs](bool success) {
          if (!success)
            for (auto& j : *shared_jobs) j->cancelled = true;  // the client went away: stop decoding for it
        });
  }

  std::string metrics_text() {
    const double up = std::chrono::duration<double>(Clock::now() - started_).count();
    double prefill_s, decode_s;
    {
      std::lock_guard<std::mutex> l(metrics_.mu);
      prefill_s = metrics_.prefill_seconds, decode_s = metrics_.decode_seconds;
    }
    const ModelConfig& c = scheduler_.config();
    std::string s;
    auto line = [&](const char* name, const char* help, double v) {
      s += fmt::format("# HELP transxssm_{} {}\ntransxssm_{} {}\n", name, help, name, v);
    };
    line("uptime_seconds", "seconds since start", up);
    line("requests_total", "completion requests received", double(metrics_.requests));
    line("requests_rejected_total", "completion requests answered with a 4xx error", double(metrics_.rejected));
    line("prompt_tokens_total", "prompt tokens prefilled", double(metrics_.prompt_tokens));
    line("generated_tokens_total", "tokens generated", double(metrics_.generated_tokens));
    line("decode_steps_total", "batched decode steps", double(metrics_.decode_steps));
    line("prefill_tokens_per_second", "prompt tokens per second of prefill time",
         prefill_s > 0 ? double(metrics_.prompt_tokens) / prefill_s : 0.0);
    line("decode_tokens_per_second", "generated tokens per second of decode time",
         decode_s > 0 ? double(metrics_.generated_tokens) / decode_s : 0.0);
    line("active_sequences", "sequences being decoded now", double(metrics_.active));
    line("active_state_bytes", "memory held by the active sequences' states", double(metrics_.active_state_bytes));
    line("state_bytes_per_sequence_at_context", "state of one sequence at the full context length",
         double(sequence_state_bytes(c, c.max_position_embeddings)));
    line("context_length", "training context length", double(c.max_position_embeddings));
    line("weight_bytes", "memory held by the weights", double(weights_bytes_));
    return s;
  }

 public:
  size_t weights_bytes_ = 0;

 private:
  const Tokenizer* tok_;
  ServerOptions opt_;
  Metrics metrics_;
  Scheduler scheduler_;
  httplib::Server http_;
  Clock::time_point started_;
  int64_t created_ = 0;
  std::atomic<int64_t> next_id_{0};
};

std::atomic<httplib::Server*> g_running{nullptr};
extern "C" void on_signal(int) {
  if (auto* s = g_running.load()) s->stop();
}

}  // namespace

void run_server(Model& model, const Tokenizer* tokenizer, const ServerOptions& options) {
  if (options.max_batch < 1) fail("serve: --max-batch must be ≥ 1");
  if (options.port < 0 || options.port > 65535) fail("serve: --port must be in [0, 65535]");
  if (tokenizer && tokenizer->vocab_size() > model.config().vocab_size)
    fail("serve: the tokenizer has {} tokens, more than the model's vocabulary {}", tokenizer->vocab_size(),
         model.config().vocab_size);
  Server server(model, tokenizer, options);
  server.weights_bytes_ = size_t(model.num_params()) * sizeof(float);
  httplib::Server& http = server.http();
  int port = options.port;
  if (port == 0) {
    port = http.bind_to_any_port(options.host);
    if (port < 0) fail("serve: cannot bind to {}", options.host);
  } else if (!http.bind_to_port(options.host, port)) {
    fail("serve: cannot bind to {}:{}", options.host, port);
  }
  g_running = &http;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::fprintf(stderr, "listening on http://%s:%d\n", options.host.c_str(), port);
  std::fflush(stderr);
  http.listen_after_bind();
  g_running = nullptr;
}

}  // namespace txs
