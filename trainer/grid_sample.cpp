#include "trainer/grid_sample.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/version.h>

#include <tuple>

namespace sf::trainer {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr int64_t kBilinear = 0;
constexpr int64_t kZeros = 0;
constexpr bool kAlignCorners = false;

std::tuple<at::Tensor, at::Tensor> sampler_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                                    const at::Tensor& grid) {
  // The output_mask argument appeared in LibTorch 1.11.
#if TORCH_VERSION_MAJOR > 1 || (TORCH_VERSION_MAJOR == 1 && TORCH_VERSION_MINOR >= 11)
  return at::grid_sampler_2d_backward(grad_output, input, grid, kBilinear, kZeros, kAlignCorners, {true, true});
#else
  return at::grid_sampler_2d_backward(grad_output, input, grid, kBilinear, kZeros, kAlignCorners);
#endif
}

// (grad_output, input, grid) -> (grad_input, grad_grid); differentiable in grad_output.
struct GridSample2dBackward : torch::autograd::Function<GridSample2dBackward> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& grad_output, const at::Tensor& input,
                               const at::Tensor& grid) {
    auto [grad_input, grad_grid] = sampler_backward(grad_output, input, grid);
    ctx->save_for_backward({grid});
    return {grad_input, grad_grid};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // grads[1] (the gradient flowing into grad_grid) is not propagated, as in the reference.
    const at::Tensor grid = ctx->get_saved_variables()[0];
    TORCH_CHECK(!ctx->needs_input_grad(2),
                "grid_sample_2d: second-order gradients with respect to the grid are not supported");
    at::Tensor grad2_grad_output;
    if (ctx->needs_input_grad(0) && grads[0].defined()) grad2_grad_output = grid_sample_2d(grads[0], grid);
    return {grad2_grad_output, at::Tensor(), at::Tensor()};
  }
};

// (input, grid) -> output.
struct GridSample2dForward : torch::autograd::Function<GridSample2dForward> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& grid) {
    ctx->save_for_backward({input, grid});
    return at::grid_sampler_2d(input, grid, kBilinear, kZeros, kAlignCorners);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list saved = ctx->get_saved_variables();
    variable_list g = GridSample2dBackward::apply(grads[0], saved[0], saved[1]);
    return {g[0], g[1]};
  }
};

}  // namespace

at::Tensor grid_sample_2d(const at::Tensor& input, const at::Tensor& grid) {
  TORCH_CHECK(input.dim() == 4, "grid_sample_2d: input must be [N, C, H, W], got ", input.sizes());
  TORCH_CHECK(grid.dim() == 4 && grid.size(3) == 2, "grid_sample_2d: grid must be [N, H, W, 2], got ", grid.sizes());
  TORCH_CHECK(input.size(0) == grid.size(0), "grid_sample_2d: batch sizes differ (", input.size(0), " vs ",
              grid.size(0), ")");
  TORCH_CHECK(input.scalar_type() == grid.scalar_type(), "grid_sample_2d: input and grid dtypes differ");
  return GridSample2dForward::apply(input, grid);
}

}  // namespace sf::trainer
