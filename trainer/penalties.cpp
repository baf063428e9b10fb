#include "trainer/penalties.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>

namespace sf::trainer {

R1Result r1_penalty(const Discriminator& D, const at::Tensor& img, const at::Tensor& c,
                    const std::function<at::Tensor(const at::Tensor&)>& augment) {
  at::Tensor x = img.detach().requires_grad_(true);
  at::Tensor logits = D.forward(augment ? augment(x) : x, c);
  auto grads = torch::autograd::grad({logits.sum()}, {x}, {}, /*retain_graph=*/true, /*create_graph=*/true);
  at::Tensor penalty = grads[0].square().sum({1, 2, 3});
  return {logits, penalty};
}

PathLengthResult path_length(Generator& G, const at::Tensor& ws, const at::Tensor& pl_noise,
                             const at::Tensor& pl_mean, double pl_decay, NoiseMode noise_mode) {
  at::Tensor img = G.synthesis(ws, noise_mode);
  auto grads = torch::autograd::grad({(img * pl_noise).sum()}, {ws}, {}, /*retain_graph=*/true, /*create_graph=*/true);
  at::Tensor lengths = grads[0].square().sum(2).mean(1).sqrt();
  at::Tensor mean = pl_mean.to(lengths.scalar_type()).lerp(lengths.mean(), pl_decay).detach();
  at::Tensor penalty = (lengths - mean).square();
  return {img, lengths, mean, penalty};
}

}  // namespace sf::trainer
