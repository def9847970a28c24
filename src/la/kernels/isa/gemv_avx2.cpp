// Fused F32/F16/BF16 weight-row products for the avx2 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx2
#include "la/kernels/isa/gemv_impl.inc"
