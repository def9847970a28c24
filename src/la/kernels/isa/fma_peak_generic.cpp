// The FMA-throughput loop of fma_peak.h for the generic instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA generic
#include "la/kernels/isa/fma_peak_impl.inc"
