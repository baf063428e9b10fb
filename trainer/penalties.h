// Regularisation terms of StyleGAN2-ADA as building blocks for the training loop.
//
// r1_penalty: the squared norm of dD(x)/dx per sample, through a double backward (the graph is
// kept, so the caller can backpropagate the penalty into D's parameters).
// path_length: the path-length regulariser of the generator, given pl_noise and the running
// pl_mean. Both are pure functions of their inputs; the networks passed in are only run forward.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>

#include "trainer/networks.h"

namespace sf::trainer {

struct R1Result {
  at::Tensor logits;   // [N, 1]
  at::Tensor penalty;  // [N] = sum over C,H,W of (d sum(logits) / d img)^2
};
// `img` must be a leaf (it is detached and made to require grad here). `augment` (may be empty)
// is applied to the image before D, as the reference does when ADA is on.
R1Result r1_penalty(const Discriminator& D, const at::Tensor& img, const at::Tensor& c,
                    const std::function<at::Tensor(const at::Tensor&)>& augment = {});

struct PathLengthResult {
  at::Tensor img;       // [N, C, H, W]
  at::Tensor lengths;   // [N]
  at::Tensor pl_mean;   // [] new running mean (detached)
  at::Tensor penalty;   // [N] = (lengths - pl_mean)^2, differentiable w.r.t. the generator
};
// ws: [N, num_ws, w_dim] (must require grad or be produced from parameters that do);
// pl_noise: [N, C, H, W] (already divided by sqrt(H*W)); pl_mean: [] previous running mean.
PathLengthResult path_length(Generator& G, const at::Tensor& ws, const at::Tensor& pl_noise,
                             const at::Tensor& pl_mean, double pl_decay, NoiseMode noise_mode);

}  // namespace sf::trainer
