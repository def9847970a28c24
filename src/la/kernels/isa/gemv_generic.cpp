// Fused F32/F16/BF16 weight-row products for the generic instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA generic
#include "la/kernels/isa/gemv_impl.inc"
