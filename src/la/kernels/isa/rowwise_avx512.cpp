// The loops of rowwise.h for the avx512 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx512
#include "la/kernels/isa/rowwise_impl.inc"
