// Bilinear grid sampling with gradients of any order with respect to the sampled image.
//
// grid_sample_2d(input, grid) computes what torch.nn.functional.grid_sample computes with
// mode='bilinear', padding_mode='zeros', align_corners=false. The built-in op's backward is not
// itself differentiable, which breaks R1 when the discriminator sees augmented images (the penalty
// differentiates the input gradient once more). Here the backward is a second custom function
// whose own backward samples the incoming second-order gradient with the same grid, so
// d(grad_input)/d(grad_output) flows to any order, as the reference's grid_sample_gradfix does.
// The grid gets first-order gradients only: a second-order gradient with respect to the grid is
// an error, and the second-order contribution of grad_grid is not propagated (the reference
// ignores it too; the augment pipe's grid never requires gradients).
//
// Shapes: input [N, C, Hin, Win], grid [N, Hout, Wout, 2] (x, y in [-1, 1]) -> [N, C, Hout, Wout].
// Pure function, thread-safe.
#pragma once

#include <ATen/core/Tensor.h>

namespace sf::trainer {

at::Tensor grid_sample_2d(const at::Tensor& input, const at::Tensor& grid);

}  // namespace sf::trainer
