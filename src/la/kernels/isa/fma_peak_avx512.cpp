// The FMA-throughput loop of fma_peak.h for the avx512 instruction set (flags set in src/CMakeLists.txt).
#define LA_ISA avx512
#include "la/kernels/isa/fma_peak_impl.inc"
