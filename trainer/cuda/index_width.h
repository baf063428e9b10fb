// Index width of the element-wise kernels (bias_act.cu, upfirdn2d.cu): 32-bit wherever every index of
// a launch fits, 64-bit otherwise. A GPU has no 64-bit integer divider: each 64-bit division or
// modulo becomes a test of the operands' high words and a call to a software routine when they are
// set. With 32-bit indices the upfirdn2d kernel is 368 instead of 744 SASS instructions on sm_90,
// with 32 instead of 40 registers (nvcc 13, -O3).
// force_wide_index(true) makes every launch use 64-bit indices, so that a GPU test can compare the
// two paths on tensors of ordinary size. Defined only in CUDA builds (bias_act.cu).
#pragma once

namespace sf::kernels {

void force_wide_index(bool on);
bool wide_index_forced();

}  // namespace sf::kernels
