// GPU tests (ctest label `gpu`, registered only in CUDA builds: tests/gpu_tests.sh runs
// `mpirun -np <visible GPUs> styleforge_tests --gtest_filter='Gpu*'`). Compiled wherever the NCCL
// communicator is built, so a CPU machine with the CUDA headers still type-checks them; they are
// not part of the `unit` label (its filter excludes Gpu*).
//
// Every rank binds the GPU of its local rank, builds the NCCL communicator over MPI_COMM_WORLD and
// checks sums and broadcasts on device buffers against values computed on the host.
#ifdef STYLEFORGE_WITH_NCCL
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <memory>
#include <vector>

#include "sharding/nccl_comm.h"
#include "sharding/topology.h"

using namespace sf;

namespace {

struct DeviceBuffer {
  explicit DeviceBuffer(size_t n) : count(n) {
    if (cudaMalloc(reinterpret_cast<void**>(&ptr), n * sizeof(float)) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBuffer() {
    if (ptr) cudaFree(ptr);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void upload(const std::vector<float>& v) const {
    ASSERT_EQ(cudaMemcpy(ptr, v.data(), v.size() * sizeof(float), cudaMemcpyHostToDevice), cudaSuccess);
  }
  std::vector<float> download() const {
    std::vector<float> v(count);
    EXPECT_EQ(cudaMemcpy(v.data(), ptr, count * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
    return v;
  }
  float* ptr = nullptr;
  size_t count;
};

// Value of element i on rank r: small integers, so float sums over ranks are exact.
float pattern(int r, size_t i) { return static_cast<float>((r + 1) * static_cast<int>(i % 97) - 40); }

int bind_local_gpu() {
  const sharding::Topology t = sharding::discover_topology(false);
  int n = 0;
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_GT(n, 0) << "no CUDA device visible on rank " << t.world_rank << " (" << t.host << ")";
  EXPECT_LE(t.local_size, n) << t.local_size << " ranks on " << t.host << " but only " << n << " GPUs";
  return n > 0 ? t.local_rank % n : 0;
}

}  // namespace

TEST(GpuNccl, AllreduceSumsDeviceBucketsOverEveryRank) {
  const int device = bind_local_gpu();
  ASSERT_FALSE(HasFailure());
  sharding::MpiCommunicator mpi(MPI_COMM_WORLD, 60);
  sharding::NcclCommunicator nccl(mpi, device, 60);
  const int rank = nccl.rank(), size = nccl.size();
  // Three buckets of the sizes gradient sync uses: tiny, odd, and ~25 MB.
  std::vector<size_t> sizes = {1, 1001, 25u << 18};
  std::vector<std::unique_ptr<DeviceBuffer>> bufs;
  std::vector<std::pair<float*, size_t>> views;
  for (size_t n : sizes) {
    bufs.push_back(std::make_unique<DeviceBuffer>(n));
    ASSERT_NE(bufs.back()->ptr, nullptr) << "cudaMalloc of " << n << " floats failed";
    std::vector<float> host(n);
    for (size_t i = 0; i < n; ++i) host[i] = pattern(rank, i);
    bufs.back()->upload(host);
    views.emplace_back(bufs.back()->ptr, n);
  }
  nccl.allreduce_sum_many(views);
  for (size_t b = 0; b < sizes.size(); ++b) {
    const std::vector<float> got = bufs[b]->download();
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i) {
      float want = 0;
      for (int r = 0; r < size; ++r) want += pattern(r, i);
      if (got[i] != want && wrong++ == 0) first = i;
    }
    EXPECT_EQ(wrong, 0u) << "bucket " << b << " (" << sizes[b] << " floats): first wrong element " << first;
  }
  // Means (ncclAvg), as gradient sync uses them: within float rounding of the sum / size.
  std::vector<float> host(1001);
  for (size_t i = 0; i < host.size(); ++i) host[i] = pattern(rank, i);
  bufs[1]->upload(host);
  nccl.allreduce_mean_many({{bufs[1]->ptr, bufs[1]->count}});
  const std::vector<float> mean = bufs[1]->download();
  for (size_t i = 0; i < mean.size(); ++i) {
    double want = 0;
    for (int r = 0; r < size; ++r) want += pattern(r, i);
    want /= size;
    ASSERT_NEAR(mean[i], want, 1e-5 * (1 + std::abs(want))) << "mean element " << i;
  }
  // Statistics (doubles on the host) go through MPI.
  double stat[2] = {1.0, static_cast<double>(rank)};
  nccl.allreduce_sum(stat, 2);
  EXPECT_EQ(stat[0], size);
  EXPECT_EQ(stat[1], size * (size - 1) / 2.0);
  EXPECT_NE(nccl.describe().find("nccl"), std::string::npos) << nccl.describe();
}

TEST(GpuNccl, BroadcastCopiesFromTheLastRank) {
  const int device = bind_local_gpu();
  ASSERT_FALSE(HasFailure());
  sharding::MpiCommunicator mpi(MPI_COMM_WORLD, 60);
  sharding::NcclCommunicator nccl(mpi, device, 60);
  const int root = nccl.size() - 1;
  DeviceBuffer buf(4099);
  ASSERT_NE(buf.ptr, nullptr);
  std::vector<float> host(buf.count);
  for (size_t i = 0; i < host.size(); ++i) host[i] = pattern(nccl.rank(), i);
  buf.upload(host);
  nccl.broadcast(buf.ptr, buf.count * sizeof(float), root);
  const std::vector<float> got = buf.download();
  for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], pattern(root, i)) << "element " << i;
  nccl.barrier();
}
#endif  // STYLEFORGE_WITH_NCCL
