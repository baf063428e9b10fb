// See generate_memory.h.
#include "trainer/generate_memory.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>

#include <algorithm>
#include <stdexcept>
#include <thread>

#include "trainer/checkpoint.h"
#include "trainer/device.h"
#include "trainer/import.h"
#include "trainer/networks.h"
#include "trainer/optim.h"
#include "trainer/training_loop.h"

namespace sf::trainer {

GeneratorShape read_generator_shape(const std::string& network) {
  const NetworkFile net(network);
  const CheckpointInfo info = read_checkpoint_info(net.checkpoint());
  return {info.G.img_resolution, info.G.img_channels, info.G.c_dim};
}

std::vector<data::Image> generate_images(const GenerateImagesRequest& req,
                                         const std::function<void(size_t, size_t)>& progress) {
  at::set_num_threads(req.threads > 0 ? req.threads
                                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  const NetworkFile net(req.network);
  const CheckpointInfo info = read_checkpoint_info(net.checkpoint());
  Generator G(info.G);
  load_networks(net.checkpoint(), nullptr, nullptr, &G);
  const c10::Device dev = resolve_device(req.device, 0, 1, true);
  G.state().to(dev);
  G.train(false);
  set_trainable(G.state(), false);
  at::NoGradGuard no_grad;
  const int c_dim = info.G.c_dim;
  at::Tensor c = at::zeros({1, c_dim}, at::TensorOptions().device(dev));
  if (c_dim > 0) {
    if (req.class_idx < 0 || req.class_idx >= c_dim)
      throw std::invalid_argument("--class: the network is conditional; give a class in [0, " + std::to_string(c_dim) +
                                  ")");
    c.index_put_({0, req.class_idx}, 1.0);
  } else if (req.class_idx >= 0) {
    throw std::invalid_argument("--class " + std::to_string(req.class_idx) + ": the network is unconditional");
  }
  const NoiseMode mode = parse_noise_mode(req.noise_mode);
  std::vector<data::Image> out;
  out.reserve(req.seeds.size());
  for (int64_t seed : req.seeds) {
    const auto zv = numpy_randn(static_cast<uint32_t>(seed), info.G.z_dim);
    at::Tensor z = at::tensor(zv, at::kDouble).to(at::kFloat).reshape({1, info.G.z_dim}).to(dev);
    at::Tensor img = G.forward(z, c, req.truncation_psi, -1, mode);
    at::Tensor u8 = (img * 127.5 + 128).clamp(0, 255).to(at::kByte).cpu().contiguous();  // [1, C, H, W]
    out.push_back(data::chw_to_image(u8.data_ptr<uint8_t>(), static_cast<int>(u8.size(1)), static_cast<int>(u8.size(2)),
                                     static_cast<int>(u8.size(3))));
    if (progress) progress(out.size(), req.seeds.size());
  }
  return out;
}

}  // namespace sf::trainer
