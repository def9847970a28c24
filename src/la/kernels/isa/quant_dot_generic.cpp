// Quantised-activation dot products for the generic instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA generic
#include "la/kernels/isa/quant_dot_impl.inc"
