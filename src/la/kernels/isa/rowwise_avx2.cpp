// The loops of rowwise.h for the avx2 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx2
#include "la/kernels/isa/rowwise_impl.inc"
