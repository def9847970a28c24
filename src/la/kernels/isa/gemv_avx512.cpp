// Fused F32/F16/BF16 weight-row products for the avx512 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx512
#include "la/kernels/isa/gemv_impl.inc"
