// The FMA-throughput loop of fma_peak.h for the avx2 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx2
#include "la/kernels/isa/fma_peak_impl.inc"
