// Attention kernels for the generic instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA generic
#include "la/kernels/isa/attention_impl.inc"
