// Index width of the element-wise kernels (bias_act.cu, upfirdn2d.cu): 32-bit wherever every index of
// a launch fits, 64-bit otherwise. A GPU has no 64-bit integer divider: each 64-bit division or
// modulo becomes a test of the operands' high words and a call to a software routine when they are
// set; 64-bit address arithmetic also takes more registers (upfirdn2d's hot variants on sm_90,
// nvcc 13 -O3: 48-56 registers in 32 bits, 64-72 in 64).
// force_wide_index(true) makes every launch use 64-bit indices, so that a GPU test can compare the
// two paths on tensors of ordinary size. Defined only in CUDA builds (bias_act.cu).
#pragma once

namespace sf::kernels {

void force_wide_index(bool on);
bool wide_index_forced();

}  // namespace sf::kernels
