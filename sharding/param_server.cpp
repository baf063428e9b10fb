#include "sharding/param_server.h"

#include <climits>
#include <sstream>
#include <thread>

#include "sharding/float_ops.h"

namespace sf::sharding {
namespace {

constexpr int kHeaderTag = 7410, kDataTag = 7411, kReplyTag = 7412, kStopTag = 7413;
constexpr int64_t kSum = 1, kMean = 2, kFinish = 3;

// Shard s of S of a buffer of n floats: [n*s/S, n*(s+1)/S).
size_t shard_begin(size_t n, int s, int S) { return n * static_cast<size_t>(s) / static_cast<size_t>(S); }

int checked_count(size_t n) {
  if (n > static_cast<size_t>(INT_MAX)) throw CommError("parameter server: a shard of more than 2^31 floats");
  return static_cast<int>(n);
}

// The servers' own wait: MPI_Testall with a yield, a deadline (timeout_s <= 0: none).
void wait_until_done(std::vector<MPI_Request>& reqs, double timeout_s, const std::string& what) {
  const auto start = std::chrono::steady_clock::now();
  for (uint64_t polls = 1;; ++polls) {
    int done = 0;
    SF_MPI_CHECK(MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &done, MPI_STATUSES_IGNORE));
    if (done) {
      reqs.clear();
      return;
    }
    std::this_thread::yield();
    if (polls % 1024 == 0 && timeout_s > 0 &&
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) {
      std::ostringstream s;
      s << what << " did not complete within " << timeout_s << " s";
      throw CommError(s.str());
    }
  }
}

}  // namespace

ParamServerCommunicator::ParamServerCommunicator(MpiCommunicator& trainers, MPI_Comm sync, int num_servers,
                                                 std::atomic<int>* stop)
    : trainers_(trainers), sync_(sync), num_servers_(num_servers), num_trainers_(trainers.size()), stop_(stop) {
  int sync_size = 0;
  SF_MPI_CHECK(MPI_Comm_size(sync_, &sync_size));
  if (num_servers_ < 1 || sync_size != num_trainers_ + num_servers_)
    throw CommError("parameter servers: the sync communicator has " + std::to_string(sync_size) + " ranks, expected " +
                    std::to_string(num_trainers_) + " trainers + " + std::to_string(num_servers_) + " servers");
}

std::string ParamServerCommunicator::describe() const {
  return trainers_.describe() + " + " + std::to_string(num_servers_) + " parameter server" +
         (num_servers_ == 1 ? "" : "s");
}

void ParamServerCommunicator::allreduce_sum_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  exchange(buffers, kSum);
}

void ParamServerCommunicator::allreduce_mean_many(const std::vector<std::pair<float*, size_t>>& buffers) {
  exchange(buffers, kMean);
}

void ParamServerCommunicator::finish(int exit_code) {
  std::vector<std::vector<int64_t>> headers(static_cast<size_t>(num_servers_), {kFinish, exit_code});
  std::vector<MPI_Request> reqs;
  for (int s = 0; s < num_servers_; ++s) {
    reqs.emplace_back();
    SF_MPI_CHECK(MPI_Isend(headers[s].data(), 2, MPI_INT64_T, num_trainers_ + s, kHeaderTag, sync_, &reqs.back()));
  }
  trainers_.wait_all(reqs, "parameter-server finish");
}

void ParamServerCommunicator::exchange(const std::vector<std::pair<float*, size_t>>& buffers, int op) {
  const int S = num_servers_;
  std::vector<std::vector<int64_t>> headers(static_cast<size_t>(S));
  std::vector<MPI_Request> reqs;
  for (int s = 0; s < S; ++s) {
    auto& h = headers[s];
    h = {op, static_cast<int64_t>(buffers.size())};
    for (const auto& [p, n] : buffers) h.push_back(static_cast<int64_t>(shard_begin(n, s + 1, S) - shard_begin(n, s, S)));
    reqs.emplace_back();
    SF_MPI_CHECK(MPI_Isend(h.data(), static_cast<int>(h.size()), MPI_INT64_T, num_trainers_ + s, kHeaderTag, sync_,
                           &reqs.back()));
    for (const auto& [p, n] : buffers) {
      const size_t b = shard_begin(n, s, S), len = shard_begin(n, s + 1, S) - b;
      if (len == 0) continue;
      reqs.emplace_back();
      SF_MPI_CHECK(MPI_Isend(p + b, checked_count(len), MPI_FLOAT, num_trainers_ + s, kDataTag, sync_, &reqs.back()));
    }
  }
  trainers_.wait_all(reqs, "parameter-server send");
  // The results arrive in the memory just sent.
  std::vector<int> stops(static_cast<size_t>(S), 0);
  for (int s = 0; s < S; ++s) {
    for (const auto& [p, n] : buffers) {
      const size_t b = shard_begin(n, s, S), len = shard_begin(n, s + 1, S) - b;
      if (len == 0) continue;
      reqs.emplace_back();
      SF_MPI_CHECK(MPI_Irecv(p + b, checked_count(len), MPI_FLOAT, num_trainers_ + s, kReplyTag, sync_, &reqs.back()));
    }
    reqs.emplace_back();
    SF_MPI_CHECK(MPI_Irecv(&stops[s], 1, MPI_INT, num_trainers_ + s, kStopTag, sync_, &reqs.back()));
  }
  trainers_.wait_all(reqs, "parameter-server reply");
  if (stop_)
    for (int v : stops)
      if (v != 0) {
        int expected = 0;
        stop_->compare_exchange_strong(expected, v);
      }
}

int run_parameter_server(MPI_Comm sync, int num_trainers, double timeout_s, const std::atomic<int>* stop) {
  int me = 0;
  SF_MPI_CHECK(MPI_Comm_rank(sync, &me));
  const std::string who = "parameter server (rank " + std::to_string(me) + ", " + host_name() + ")";
  const int T = num_trainers;
  std::vector<std::vector<std::vector<float>>> store;  // [buffer][trainer] -> shard
  while (true) {
    // Headers: the first may take as long as the trainers need between two steps.
    std::vector<std::vector<int64_t>> hdr(static_cast<size_t>(T));
    auto first_at = std::chrono::steady_clock::now();
    for (int t = 0; t < T; ++t) {
      MPI_Status st;
      int flag = 0;
      while (true) {
        SF_MPI_CHECK(MPI_Iprobe(t, kHeaderTag, sync, &flag, &st));
        if (flag) break;
        if (t > 0 && timeout_s > 0 &&
            std::chrono::duration<double>(std::chrono::steady_clock::now() - first_at).count() > timeout_s)
          throw CommError(who + ": trainer " + std::to_string(t) + " sent no request within " +
                          std::to_string(static_cast<int>(timeout_s)) + " s of trainer 0 (dead or stuck)");
        std::this_thread::sleep_for(std::chrono::microseconds(t == 0 ? 200 : 20));
      }
      int count = 0;
      SF_MPI_CHECK(MPI_Get_count(&st, MPI_INT64_T, &count));
      hdr[t].resize(static_cast<size_t>(count));
      SF_MPI_CHECK(MPI_Recv(hdr[t].data(), count, MPI_INT64_T, t, kHeaderTag, sync, MPI_STATUS_IGNORE));
      if (t == 0) first_at = std::chrono::steady_clock::now();
      if (t > 0 && hdr[t] != hdr[0])
        throw CommError(who + ": trainer " + std::to_string(t) + " sent a request that differs from trainer 0's (" +
                        std::to_string(hdr[t].size()) + " vs " + std::to_string(hdr[0].size()) +
                        " header fields): the trainers issue different collectives");
    }
    const auto& h = hdr[0];
    if (h.size() < 2) throw CommError(who + ": malformed request");
    if (h[0] == kFinish) return static_cast<int>(h[1]);
    if ((h[0] != kSum && h[0] != kMean) || h.size() != static_cast<size_t>(2 + h[1]))
      throw CommError(who + ": malformed request");
    const size_t n = static_cast<size_t>(h[1]);
    // Receive every shard of every trainer, add in trainer order, send back without waiting, so
    // that no trainer waits on a later buffer while we wait on an earlier reply.
    store.resize(n);
    std::vector<std::vector<MPI_Request>> recv(n);
    for (size_t b = 0; b < n; ++b) {
      const size_t len = static_cast<size_t>(h[2 + b]);
      store[b].resize(static_cast<size_t>(T));
      if (len == 0) continue;
      for (int t = 0; t < T; ++t) {
        store[b][t].resize(len);
        recv[b].emplace_back();
        SF_MPI_CHECK(MPI_Irecv(store[b][t].data(), checked_count(len), MPI_FLOAT, t, kDataTag, sync, &recv[b].back()));
      }
    }
    std::vector<MPI_Request> replies;
    for (size_t b = 0; b < n; ++b) {
      const size_t len = static_cast<size_t>(h[2 + b]);
      if (len == 0) continue;
      wait_until_done(recv[b], timeout_s, who + ": receiving gradients");
      float* acc = store[b][0].data();
      for (int t = 1; t < T; ++t) add_into(acc, store[b][t].data(), len);
      if (h[0] == kMean) divide_by(acc, len, T);
      for (int t = 0; t < T; ++t) {
        replies.emplace_back();
        SF_MPI_CHECK(MPI_Isend(acc, checked_count(len), MPI_FLOAT, t, kReplyTag, sync, &replies.back()));
      }
    }
    const int stop_flag = stop ? stop->load() : 0;
    for (int t = 0; t < T; ++t) {
      replies.emplace_back();
      SF_MPI_CHECK(MPI_Isend(&stop_flag, 1, MPI_INT, t, kStopTag, sync, &replies.back()));
    }
    wait_until_done(replies, timeout_s, who + ": sending sums");
  }
}

}  // namespace sf::sharding
