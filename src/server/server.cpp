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

#include <arpa/inet.h>
#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <deque>
#include <fmt/format.h>
#include <limits>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "core/error.h"
#include "core/json.h"
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
  std::string code;  // OpenAI's error code (e.g. "model_not_found"); empty: the status
};
[[noreturn]] void reject(int status, std::string message) { throw HttpError{status, std::move(message), ""}; }

std::string error_body(int status, const std::string& message, const std::string& code = "") {
  json e;
  e["error"] = {{"message", message},
                {"type", status >= 500 ? "server_error" : "invalid_request_error"},
                {"code", code.empty() ? json(status) : json(code)}};
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
  int64_t max_tokens = 16;  // already capped by the context left after the prompt
  SamplingParams sampling;
  uint64_t seed = 0;
  std::vector<std::string> stops;
  bool echo = false;
  int logprobs = -1;  // −1: none; k ≥ 0: log-probabilities with the k best alternatives
  std::optional<Clock::time_point> deadline;  // --request-timeout

  std::mutex mu;
  std::condition_variable cv;
  std::vector<TokenOut> prompt_out;  // echo + logprobs: the prompt tokens with their log-probabilities
  std::vector<TokenOut> out;         // generated tokens
  std::string tail;                  // text released at the end (held-back bytes)
  std::string finish_reason, error;
  int error_status = 500;
  bool done = false;
  std::atomic<bool> cancelled{false};  // set by the HTTP side when the client has gone
};

struct Metrics {
  std::atomic<int64_t> requests{0}, rejected{0}, busy{0}, prompt_tokens{0}, generated_tokens{0}, decode_steps{0};
  std::atomic<int64_t> cancelled{0}, timeouts{0}, failed{0};
  std::atomic<int64_t> active{0}, queued{0}, active_state_bytes{0};
  std::mutex mu;
  double prefill_seconds = 0, decode_seconds = 0;
};

// log-softmax normalizer of one row in double, over the whole (padded) row so that logprobs equal `score`.
double log_normalizer(const float* logits, int64_t V) {
  double mx = -1e300, sum = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(logits[i]));
  for (int64_t i = 0; i < V; ++i) sum += std::exp(double(logits[i]) - mx);
  return mx + std::log(sum);
}
// The k best (id, logprob) pairs among ids < V (callers pass the real vocabulary: padding ids have no text).
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

// The decode loop: owns the engine. Each step it admits queued jobs, drops cancelled / timed-out ones,
// prefills at most one chunk of one new prompt, and decodes every running sequence together (continuous
// batching). Prefilling in chunks keeps a long prompt from stalling everyone else's tokens.
class Scheduler {
 public:
  Scheduler(Model& model, const Tokenizer* tok, const ServerOptions& o, Metrics& metrics)
      : engine_(model), tok_(tok), max_batch_(o.max_batch), prefill_chunk_(std::max<int64_t>(1, o.prefill_chunk)),
        metrics_(metrics) {
    const int64_t V = engine_.config().vocab_size;
    real_vocab_ = tok ? std::min<int64_t>(tok->vocab_size(), V) : V;
    thread_ = std::thread([this] { run(); });
  }
  ~Scheduler() {
    shutdown();
    thread_.join();
  }
  void submit(std::shared_ptr<Job> job) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (!stopping_) {
        queue_.push_back(std::move(job));
        metrics_.queued = int64_t(queue_.size());
        job = nullptr;
      }
    }
    if (job) fail_job(*job, 503, "the server is shutting down");
    cv_.notify_all();
  }
  // Stops the loop after its current step; every queued and running job then ends with a 503 error.
  void shutdown() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
  }
  // A request was cancelled: the loop notices at its next step (it only sleeps when it has nothing to run).
  void wake() { cv_.notify_all(); }
  const ModelConfig& config() const { return engine_.config(); }
  int64_t real_vocab() const { return real_vocab_; }

 private:
  struct Active {
    std::shared_ptr<Job> job;
    SequenceState seq;
    Rng rng;
    std::optional<TextStream> text;
    int64_t fed = 0;                  // prompt tokens prefilled so far
    std::vector<TokenOut> prompt_out;  // echo + logprobs, filled chunk by chunk
    int32_t last = 0;
    bool finished = false;
    bool decoding() const { return fed == int64_t(job->prompt.size()); }
  };

  static void fail_job(Job& job, int status, const std::string& error) {
    {
      std::lock_guard<std::mutex> l(job.mu);
      if (job.done) return;
      job.error = error, job.error_status = status, job.done = true;
    }
    job.cv.notify_all();
  }

  // No exception may leave this thread: it would take the whole server down (std::terminate).
  void run() {
    try {
      loop();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "serve: scheduler error: %s\n", e.what());
    } catch (...) {
      std::fprintf(stderr, "serve: scheduler error\n");
    }
    std::deque<std::shared_ptr<Job>> queued;
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      queued.swap(queue_);
    }
    for (auto& a : active_) fail_job(*a->job, 503, "the server is shutting down");
    for (auto& j : queued) fail_job(*j, 503, "the server is shutting down");
    active_.clear();
    metrics_.active = 0, metrics_.queued = 0, metrics_.active_state_bytes = 0;
  }

  void loop() {
    while (true) {
      std::vector<std::shared_ptr<Job>> admitted;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stopping_ || !queue_.empty() || !active_.empty(); });
        if (stopping_) return;
        while (!queue_.empty() && int64_t(active_.size() + admitted.size()) < max_batch_) {
          admitted.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        metrics_.queued = int64_t(queue_.size());
      }
      for (auto& job : admitted) {
        if (job->cancelled) {  // its client left while it waited: no state is ever allocated for it
          metrics_.cancelled += 1;
          Active gone;
          gone.job = job;
          finish(gone, "cancelled", "");
        } else {
          start(job);
        }
      }
      expire();
      drop_finished();
      prefill_step();
      drop_finished();
      decode_step();
      drop_finished();
    }
  }

  void start(const std::shared_ptr<Job>& job) {
    auto a = std::make_unique<Active>();
    a->job = job;
    a->rng.reseed(job->seed);
    try {
      if (tok_) a->text.emplace(*tok_, job->stops);
      a->seq = engine_.new_sequence();
      if (job->echo && job->logprobs >= 0) {
        a->prompt_out.resize(job->prompt.size());
        for (size_t i = 0; i < job->prompt.size(); ++i) a->prompt_out[i].id = job->prompt[i];
      }
    } catch (const std::exception& e) {
      finish(*a, "", e.what());
      return;
    }
    active_.push_back(std::move(a));
  }

  // Client gone or time up: stop spending steps on it.
  void expire() {
    const auto now = Clock::now();
    for (auto& a : active_) {
      if (a->finished) continue;
      if (a->job->cancelled) {
        metrics_.cancelled += 1;
        finish(*a, "cancelled", "");
      } else if (a->job->deadline && now >= *a->job->deadline) {
        metrics_.timeouts += 1;
        finish(*a, "timeout", "");
      }
    }
  }

  // One chunk of the oldest prompt still being prefilled; its first token is sampled after the last chunk.
  void prefill_step() {
    for (auto& x : active_)
      if (!x->finished && !x->decoding()) {
        try {
          prefill_chunk(x.get());
        } catch (const std::exception& e) {  // only this request fails
          finish(*x, "", e.what());
        }
        return;
      }
  }
  void prefill_chunk(Active* a) {
    Job& job = *a->job;
    const int64_t V = engine_.config().vocab_size, n = int64_t(job.prompt.size());
    const int64_t c0 = a->fed, rows = std::min(prefill_chunk_, n - c0);
    const bool last = c0 + rows == n;
    std::vector<float> logits(last ? size_t(V) : 0);
    const auto t0 = Clock::now();
    try {
      if (job.echo && job.logprobs >= 0) {
        // Every position's logits: the log-probability of the next prompt token and the best alternatives.
        engine_.prefill_each(a->seq, job.prompt.data() + c0, rows, [&](int64_t i, const float* row) {
          const int64_t at = c0 + i;
          if (at + 1 < n) {
            const double lse = log_normalizer(row, V);
            TokenOut& t = a->prompt_out[size_t(at + 1)];
            t.logprob = float(double(row[t.id]) - lse);
            t.top = top_k(row, real_vocab_, job.logprobs, lse);
          } else {
            std::copy(row, row + V, logits.begin());
          }
        });
      } else {
        engine_.prefill(a->seq, job.prompt.data() + c0, rows, nullptr, nullptr, last ? logits.data() : nullptr);
      }
    } catch (const std::exception& e) {
      finish(*a, "", e.what());
      return;
    }
    a->fed += rows;
    {
      std::lock_guard<std::mutex> l(metrics_.mu);
      metrics_.prefill_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    metrics_.prompt_tokens += rows;
    if (!last) return;
    if (job.echo && job.logprobs >= 0) {
      std::lock_guard<std::mutex> l(job.mu);
      job.prompt_out = std::move(a->prompt_out);
    }
    if (job.max_tokens == 0) {
      finish(*a, "length", "");
      return;
    }
    emit(*a, logits.data());
  }

  // One step for every running sequence: its last token in, next-token logits out.
  void decode_step() {
    const int64_t V = engine_.config().vocab_size;
    std::vector<Active*> batch;
    std::vector<SequenceState*> seqs;
    std::vector<int32_t> ids;
    for (auto& a : active_)
      if (!a->finished && a->decoding()) batch.push_back(a.get()), seqs.push_back(&a->seq), ids.push_back(a->last);
    if (batch.empty()) return;
    logits_.resize(batch.size() * size_t(V));
    const auto t0 = Clock::now();
    try {
      engine_.decode(seqs, ids.data(), logits_.data());
    } catch (const std::exception& e) {
      for (auto* a : batch) finish(*a, "", e.what());
      return;
    }
    {
      std::lock_guard<std::mutex> l(metrics_.mu);
      metrics_.decode_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    }
    metrics_.decode_steps += 1;
    for (size_t i = 0; i < batch.size(); ++i) emit(*batch[i], logits_.data() + i * size_t(V));
  }

  // Samples the next token from `logits`, publishes it, and decides whether the sequence goes on. A failure
  // (e.g. a token the tokenizer cannot decode) ends this request with an error, not the server.
  void emit(Active& a, const float* logits) {
    try {
      emit_or_throw(a, logits);
    } catch (const std::exception& e) {
      metrics_.failed += 1;
      finish(a, "", e.what());
    }
  }
  void emit_or_throw(Active& a, const float* logits) {
    Job& job = *a.job;
    if (job.cancelled) {
      metrics_.cancelled += 1;
      finish(a, "cancelled", "");
      return;
    }
    const int64_t V = engine_.config().vocab_size;
    SamplingParams sp = job.sampling;
    sp.real_vocab = real_vocab_;  // padding ids are never sampled
    const int32_t id = sample_token(logits, V, sp, a.rng);
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
      t.top = top_k(logits, real_vocab_, job.logprobs, lse);
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
    std::string tail;
    if (a.text && error.empty()) {
      try {
        tail = a.text->finish();
      } catch (const std::exception&) {
      }
    }
    {
      std::lock_guard<std::mutex> l(job.mu);
      job.tail = std::move(tail);
      job.finish_reason = reason;
      job.error = error;
      job.error_status = 500;
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
  int64_t max_batch_, prefill_chunk_, real_vocab_ = 0;
  Metrics& metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Job>> queue_;
  bool stopping_ = false;
  std::vector<std::unique_ptr<Active>> active_;  // touched by the loop thread only
  std::vector<float> logits_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------------------
// Request parsing. Every wrong field is a 400 naming it.

// vocab: the real (tokenizer's) vocabulary; padded ids are refused like any other unknown id.
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

// Limits the parser enforces (docs/server.md).
struct Limits {
  int64_t vocab = 0;            // real token ids
  int64_t context = 0;          // prompt + generated tokens per sequence
  int64_t max_prompts = 64;     // prompts in one request
  std::string model_name;
};

Parsed parse_completion(const json& body, Job& proto, const Tokenizer* tok, const Limits& lim) {
  if (!body.is_object()) reject(400, "the request body must be a JSON object");
  Parsed p;
  // OpenAI clients always name a model; a name other than ours is an unknown model, as OpenAI answers it.
  if (body.contains("model") && !body["model"].is_null()) {
    if (!body["model"].is_string()) reject(400, "'model' must be a string");
    const std::string m = body["model"].get<std::string>();
    if (m != lim.model_name)
      throw HttpError{404, fmt::format("The model '{}' does not exist (this server serves '{}')", text_excerpt(m),
                                       lim.model_name),
                      "model_not_found"};
  }
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
    p.prompts.push_back(parse_ids(pr, lim.vocab));
    p.prompt_texts.push_back(std::nullopt);
  } else if (pr.is_array() && !pr.empty()) {
    for (auto& e : pr) {
      if (e.is_string()) {
        p.prompts.push_back(encode(e.get<std::string>()));
        p.prompt_texts.push_back(e.get<std::string>());
      } else if (e.is_array()) {
        p.prompts.push_back(parse_ids(e, lim.vocab));
        p.prompt_texts.push_back(std::nullopt);
      } else {
        reject(400, "'prompt' must be a string, an array of token ids, or an array of those");
      }
    }
  } else {
    reject(400, "'prompt' must be a string, an array of token ids, or an array of those");
  }
  if (int64_t(p.prompts.size()) > lim.max_prompts)
    reject(400, fmt::format("at most {} prompts per request", lim.max_prompts));
  for (auto& ids : p.prompts) {
    if (ids.empty()) reject(400, "the prompt is empty");
    if (int64_t(ids.size()) > lim.context)
      reject(400, fmt::format("the prompt has {} tokens, more than the context length {}", ids.size(), lim.context));
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
  proto.sampling.top_k = get_int("top_k", 0, lim.vocab, 0);
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

// The whole request parse: bounded JSON (100,000 '[' would overflow the stack of the parser and of any
// dump of the value), then the fields. Throws HttpError for anything the client got wrong.
Parsed parse_request(std::string_view body_text, Job& proto, const Tokenizer* tok, const Limits& lim) {
  json body = try_parse_json_bounded(body_text);
  if (body.is_discarded()) reject(400, fmt::format("invalid JSON (or nested deeper than {} levels)", kMaxJsonDepth));
  return parse_completion(body, proto, tok, lim);
}

// ---------------------------------------------------------------------------------------------------------

// httplib 0.11 (the Debian build this links) has no Request::is_connection_closed(). The socket serving a
// request is found by its peer address instead, so that a waiting handler can notice its client has gone.
// The descriptor stays valid while the handler (or its content provider) runs: httplib closes it afterwards.
int find_client_socket(const httplib::Request& req) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (const dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    if (getpeername(int(fd), reinterpret_cast<sockaddr*>(&ss), &len) != 0) continue;
    char host[INET6_ADDRSTRLEN] = "";
    int port = -1;
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
      inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
      inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
      port = ntohs(a->sin6_port);
    }
    if (port == req.remote_port && req.remote_addr == host) {
      found = int(fd);
      break;
    }
  }
  closedir(d);
  return found;
}

// True once the client has closed (or reset) its side: nothing will read the response.
bool client_gone(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, short(POLLIN | POLLRDHUP), 0};
  if (poll(&p, 1, 0) <= 0) return false;
  if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return true;
  char c;
  return recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

class Server {
 public:
  Server(Model& model, const Tokenizer* tok, const ServerOptions& o)
      : tok_(tok), opt_(o), scheduler_(model, tok, o, metrics_), started_(Clock::now()) {
    created_ = std::time(nullptr);
    const int64_t mpe = scheduler_.config().max_position_embeddings;
    limits_.vocab = scheduler_.real_vocab();
    limits_.context = o.max_context > 0 ? std::min(o.max_context, mpe) : mpe;
    limits_.max_prompts = std::min<int64_t>(64, o.max_sequences);
    limits_.model_name = o.model_name;
    // Every admitted request holds one HTTP thread while it runs; the spare ones keep /health, /metrics and
    // the 503 answers to excess requests flowing however busy the decode loop is.
    const int64_t threads = o.http_threads > 0 ? o.http_threads : o.max_sequences + 8;
    http_.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(std::max<int64_t>(2, threads))); };
    http_.set_payload_max_length(o.max_body_bytes);
    // httplib's default options set SO_REUSEPORT, which lets a second server bind the same port and silently
    // take half its connections; SO_REUSEADDR alone still allows a restart while old connections linger. The
    // socket is remembered so that its listen backlog can be widened once it is bound.
    http_.set_socket_options([this](socket_t sock) {
      int yes = 1;
      setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
      listen_socket_ = sock;
    });
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
    // Touches no lock the decode loop holds: it answers however long a decode step or prefill takes.
    http_.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
      if (shutting_down_) {
        res.status = 503;
        res.set_content(R"({"status":"shutting_down"})", "application/json");
      } else {
        res.set_content(R"({"status":"ok"})", "application/json");
      }
    });
    http_.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", opt_.model_name},
                {"object", "model"},
                {"created", created_},
                {"owned_by", "transxssm"},
                {"context_length", limits_.context}};
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

  // SIGTERM / SIGINT: refuse new work and end every queued and running request (503) so that their
  // handlers return and httplib's workers can be joined.
  void begin_shutdown() {
    shutting_down_ = true;
    scheduler_.shutdown();
  }

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

  // Admission: sequences in flight (queued, decoding, or still being sent) never exceed --max-sequences.
  struct Slots {
    std::atomic<int64_t>& count;
    int64_t n;
    ~Slots() { count -= n; }
  };
  std::shared_ptr<Slots> acquire(int64_t n) {
    int64_t cur = inflight_.load();
    do {
      if (cur + n > opt_.max_sequences) return nullptr;
    } while (!inflight_.compare_exchange_weak(cur, cur + n));
    return std::shared_ptr<Slots>(new Slots{inflight_, n});
  }

  static void send_error(httplib::Response& res, int status, const std::string& message, const std::string& code = "") {
    res.status = status;
    if (status == 503 || status == 429) res.set_header("Retry-After", "1");
    res.set_content(error_body(status, message, code), "application/json");
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    metrics_.requests += 1;
    if (shutting_down_) return send_error(res, 503, "the server is shutting down");
    std::vector<std::shared_ptr<Job>> jobs;
    Parsed parsed;
    try {
      Job proto;
      parsed = parse_request(req.body, proto, tok_, limits_);
      const auto deadline = opt_.request_timeout > 0
                                ? std::optional(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                                   std::chrono::duration<double>(opt_.request_timeout)))
                                : std::nullopt;
      for (auto& ids : parsed.prompts) {
        auto j = std::make_shared<Job>();
        j->prompt = ids;
        // Never past the context: what is left of it after the prompt bounds the new tokens.
        j->max_tokens = std::min(proto.max_tokens, limits_.context - int64_t(ids.size()));
        j->sampling = proto.sampling, j->seed = proto.seed;
        j->stops = proto.stops, j->echo = proto.echo, j->logprobs = proto.logprobs;
        j->deadline = deadline;
        jobs.push_back(std::move(j));
      }
    } catch (const HttpError& e) {
      metrics_.rejected += 1;
      return send_error(res, e.status, e.message, e.code);
    }
    auto slots = acquire(int64_t(jobs.size()));
    if (!slots) {
      metrics_.busy += 1;
      return send_error(res, 503, fmt::format("the server is busy ({} sequences in flight); retry later",
                                              opt_.max_sequences));
    }
    for (auto& j : jobs) scheduler_.submit(j);
    const std::string id = fmt::format("cmpl-{}", next_id_++);
    if (parsed.stream) {
      stream(res, std::move(jobs), std::move(parsed), id, std::move(slots), find_client_socket(req));
      return;
    }
    // Wait for every prompt, checking now and then that the client is still there: a request nobody will
    // read is cancelled rather than decoded to its max_tokens.
    std::optional<int> fd;  // looked up only when a request takes a while
    for (auto& jp : jobs) {
      Job& j = *jp;
      std::unique_lock<std::mutex> l(j.mu);
      while (!j.cv.wait_for(l, std::chrono::milliseconds(100), [&] { return j.done; })) {
        l.unlock();
        if (!fd) fd = find_client_socket(req);
        if (client_gone(*fd)) {
          for (auto& k : jobs) k->cancelled = true;
          scheduler_.wake();
          res.status = 499;  // nginx's "client closed request": nobody reads it
          return;
        }
        l.lock();
      }
    }
    json choices = json::array();
    int64_t prompt_tokens = 0, completion_tokens = 0;
    for (size_t i = 0; i < jobs.size(); ++i) {
      Job& j = *jobs[i];
      std::lock_guard<std::mutex> l(j.mu);
      if (!j.error.empty()) return send_error(res, j.error_status, j.error);
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
  // finish_reason, then `data: [DONE]`. A failed write or a closed client cancels the request.
  void stream(httplib::Response& res, std::vector<std::shared_ptr<Job>> jobs, Parsed parsed, std::string id,
              std::shared_ptr<Slots> slots, int fd) {
    struct Cursor {
      size_t job = 0, sent = 0;
      bool started = false;
    };
    auto cur = std::make_shared<Cursor>();
    auto shared_jobs = std::make_shared<std::vector<std::shared_ptr<Job>>>(std::move(jobs));
    auto p = std::make_shared<Parsed>(std::move(parsed));
    auto cancel = [this, shared_jobs] {
      for (auto& j : *shared_jobs) j->cancelled = true;
      scheduler_.wake();
    };
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        // `slots` lives as long as this provider, i.e. until the response is sent or abandoned.
        [this, cur, shared_jobs, p, id, slots, fd, cancel](size_t, httplib::DataSink& sink) -> bool {
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
          bool done = false, progressed = false;
          int error_status = 500;
          std::string tail, reason, error;
          {
            std::unique_lock<std::mutex> l(j.mu);
            progressed =
                j.cv.wait_for(l, std::chrono::milliseconds(200), [&] { return j.done || j.out.size() > cur->sent; });
            fresh.assign(j.out.begin() + long(cur->sent), j.out.end());
            cur->sent = j.out.size();
            done = j.done, tail = j.tail, reason = j.finish_reason, error = j.error, error_status = j.error_status;
            if (!cur->started && (done || !fresh.empty())) prompt_toks = j.prompt_out;
          }
          if (!progressed && client_gone(fd)) {
            cancel();
            return false;
          }
          if (!error.empty()) {
            const std::string s = "data: " + error_body(error_status, error) + "\n\n";
            sink.write(s.data(), s.size());
            sink.done();
            return true;
          }
          size_t offset = 0;  // text offsets restart per chunk in streaming
          bool ok = true;
          if (!cur->started && (done || !fresh.empty())) {
            cur->started = true;
            if (j.echo) {
              json lp = nullptr;
              if (j.logprobs >= 0) {
                lp = empty_logprobs();
                add_logprobs(lp, prompt_toks, offset);
              }
              ok = send(chunk(cur->job, prompt_text(*p, cur->job), lp, nullptr));
            }
          }
          for (size_t t = 0; ok && t < fresh.size(); ++t) {
            json lp = nullptr;
            if (j.logprobs >= 0) {
              lp = empty_logprobs();
              add_logprobs(lp, {fresh[t]}, offset);
            }
            ok = send(chunk(cur->job, fresh[t].text, lp, nullptr));
          }
          if (ok && done) {
            ok = send(chunk(cur->job, tail, nullptr, reason));
            cur->job += 1, cur->sent = 0, cur->started = false;
          }
          if (!ok) cancel();  // the client went away: stop decoding for it
          return ok;
        },
        [cancel](bool success) {
          if (!success) cancel();
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
    line("requests_busy_total", "completion requests refused with 503: --max-sequences in flight", double(metrics_.busy));
    line("sequences_cancelled_total", "sequences stopped because their client went away", double(metrics_.cancelled));
    line("sequences_timed_out_total", "sequences stopped by --request-timeout", double(metrics_.timeouts));
    line("sequences_failed_total", "sequences ended by an internal error", double(metrics_.failed));
    line("sequences_in_flight", "sequences admitted and not yet answered", double(inflight_));
    line("prompt_tokens_total", "prompt tokens prefilled", double(metrics_.prompt_tokens));
    line("generated_tokens_total", "tokens generated", double(metrics_.generated_tokens));
    line("decode_steps_total", "batched decode steps", double(metrics_.decode_steps));
    line("prefill_tokens_per_second", "prompt tokens per second of prefill time",
         prefill_s > 0 ? double(metrics_.prompt_tokens) / prefill_s : 0.0);
    line("decode_tokens_per_second", "generated tokens per second of decode time",
         decode_s > 0 ? double(metrics_.generated_tokens) / decode_s : 0.0);
    line("active_sequences", "sequences being prefilled or decoded now", double(metrics_.active));
    line("queued_sequences", "sequences waiting for a decode slot", double(metrics_.queued));
    line("active_state_bytes", "memory held by the active sequences' states", double(metrics_.active_state_bytes));
    line("state_bytes_per_sequence_at_context", "state of one sequence at the full context length",
         double(sequence_state_bytes(c, c.max_position_embeddings)));
    line("context_length", "prompt + generated tokens allowed per sequence", double(limits_.context));
    line("weight_bytes", "memory held by the weights", double(weights_bytes_));
    return s;
  }

 public:
  size_t weights_bytes_ = 0;

  // Debian's libcpp-httplib is compiled with a listen backlog of 5: under a burst of connections the kernel
  // drops the excess SYNs and those clients retry only after TCP's 1 s timeout (/health answered in 1.01 s
  // under load). Listening again on the bound socket raises the backlog to the system's limit.
  void widen_listen_backlog() {
    if (listen_socket_ < 0 || ::listen(listen_socket_, SOMAXCONN) != 0)
      fail("serve: cannot set the listen backlog: {}", listen_socket_ < 0 ? "no socket" : std::strerror(errno));
  }

 private:
  const Tokenizer* tok_;
  ServerOptions opt_;
  socket_t listen_socket_ = -1;  // the socket httplib last bound (its options callback sees each attempt)
  Metrics metrics_;
  Scheduler scheduler_;
  Limits limits_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<int64_t> inflight_{0};
  httplib::Server http_;
  Clock::time_point started_;
  int64_t created_ = 0;
  std::atomic<int64_t> next_id_{0};
};

// The handler only records the signal: stopping the server takes locks and joins threads, which a signal
// handler must not do; a watcher thread in run_server acts on it.
std::atomic<int> g_signal{0};
extern "C" void on_signal(int sig) { g_signal = sig; }

}  // namespace

std::string check_completion_request(std::string_view body, const Tokenizer* tokenizer, int64_t vocab,
                                     int64_t context) {
  Limits lim;
  lim.vocab = vocab, lim.context = context, lim.model_name = ServerOptions{}.model_name;
  try {
    Job proto;
    parse_request(body, proto, tokenizer, lim);
    return "";
  } catch (const HttpError& e) {
    return fmt::format("{} {}", e.status, e.message);
  }
}

void run_server(Model& model, const Tokenizer* tokenizer, const ServerOptions& options) {
  if (options.max_batch < 1) fail("serve: --max-batch must be ≥ 1");
  if (options.max_sequences < 1) fail("serve: --max-sequences must be ≥ 1");
  if (options.port < 0 || options.port > 65535) fail("serve: --port must be in [0, 65535]");
  if (options.max_context < 0 || options.max_context > model.config().max_position_embeddings)
    fail("serve: --max-context must be in [1, {}] (the model's context length), or 0 for that",
         model.config().max_position_embeddings);
  if (!(options.request_timeout >= 0)) fail("serve: --request-timeout must be ≥ 0");
  if (options.prefill_chunk < 1) fail("serve: --prefill-chunk must be ≥ 1");
  if (!(options.shutdown_grace > 0)) fail("serve: --shutdown-grace must be > 0");
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
  server.widen_listen_backlog();
  std::signal(SIGPIPE, SIG_IGN);  // a client that vanished mid-response is a failed write, not a dead server
  g_signal = 0;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  std::mutex mu;
  std::condition_variable cv;
  bool listening_done = false;
  std::thread watcher([&] {
    std::unique_lock<std::mutex> l(mu);
    while (!listening_done && g_signal == 0) cv.wait_for(l, std::chrono::milliseconds(50));
    if (listening_done) return;
    std::fprintf(stderr, "serve: signal %d: shutting down\n", g_signal.load());
    l.unlock();
    server.begin_shutdown();
    http.stop();  // listen_after_bind returns once httplib's workers end
    l.lock();
    const double grace = options.shutdown_grace;
    if (!cv.wait_for(l, std::chrono::duration<double>(grace), [&] { return listening_done; })) {
      // A response still being written to a client that does not read: do not wait on it.
      std::fprintf(stderr, "serve: in-flight responses did not end within %.1f s; exiting\n", grace);
      std::fflush(stderr);
      std::_Exit(0);
    }
  });
  std::fprintf(stderr, "listening on http://%s:%d\n", options.host.c_str(), port);
  std::fflush(stderr);
  http.listen_after_bind();
  {
    std::lock_guard<std::mutex> l(mu);
    listening_done = true;
  }
  cv.notify_all();
  watcher.join();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

}  // namespace txs
