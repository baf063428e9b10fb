// In-memory generation for one class (trainer/class_images.h).
#include "trainer/class_images.h"

#include "trainer/batch_invariant.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <stdexcept>

#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/import.h"
#include "trainer/optim.h"
#include "trainer/training_loop.h"

namespace sf::trainer {

GeneratorShape read_generator_shape(const std::string& network) {
  const NetworkFile net(network);
  const CheckpointInfo info = read_checkpoint_info(net.checkpoint());
  return {info.G.c_dim, info.G.img_resolution, info.G.img_channels};
}

ClassImages generate_class_images(const std::string& network, int cls, const std::vector<int64_t>& seeds,
                                  double truncation_psi, const std::string& noise_mode, const std::string& device,
                                  int batch, int threads) {
  if (threads > 0) at::set_num_threads(threads);
  const NetworkFile net(network);
  const CheckpointInfo info = read_checkpoint_info(net.checkpoint());
  const int c_dim = info.G.c_dim;
  if (c_dim > 0 && (cls < 0 || cls >= c_dim))
    throw std::invalid_argument(network + ": conditional network with " + std::to_string(c_dim) +
                                " classes, class " + std::to_string(cls) + " asked for");
  Generator G(info.G);
  load_networks(net.checkpoint(), nullptr, nullptr, &G);
  const c10::Device dev = resolve_device(device, 0, 1, true);
  G.state().to(dev);
  G.train(false);
  set_trainable(G.state(), false);
  at::NoGradGuard no_grad;
  BatchInvariantGuard same_images_for_any_batch;  // as `generate`: the batch size changes no image
  const NoiseMode mode = parse_noise_mode(noise_mode);
  ClassImages out;
  out.channels = info.G.img_channels;
  out.resolution = info.G.img_resolution;
  const size_t per = static_cast<size_t>(out.channels) * out.resolution * out.resolution;
  out.pixels.resize(per * seeds.size());
  const int step = std::max(1, batch);
  for (size_t b = 0; b < seeds.size(); b += static_cast<size_t>(step)) {
    const size_t n = std::min(seeds.size() - b, static_cast<size_t>(step));
    std::vector<double> zs;
    zs.reserve(n * static_cast<size_t>(info.G.z_dim));
    for (size_t i = 0; i < n; ++i) {
      auto zv = numpy_randn(static_cast<uint32_t>(seeds[b + i]), info.G.z_dim);
      zs.insert(zs.end(), zv.begin(), zv.end());
    }
    at::Tensor z = at::tensor(zs, at::kDouble).to(at::kFloat).reshape({static_cast<int64_t>(n), info.G.z_dim}).to(dev);
    at::Tensor c = at::zeros({static_cast<int64_t>(n), c_dim}, at::TensorOptions().device(dev));
    if (c_dim > 0) c.select(1, cls).fill_(1.0);
    at::Tensor img = G.forward(z, c, truncation_psi, -1, mode);
    at::Tensor u8 = (img * 127.5 + 128).clamp(0, 255).to(at::kByte).cpu().contiguous();
    std::copy(u8.data_ptr<uint8_t>(), u8.data_ptr<uint8_t>() + n * per, out.pixels.begin() + b * per);
  }
  return out;
}

}  // namespace sf::trainer
