// The loops of rowwise.h for the generic instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA generic
#include "la/kernels/isa/rowwise_impl.inc"
