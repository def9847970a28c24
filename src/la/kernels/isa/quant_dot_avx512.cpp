// Quantised-activation dot products for AVX-512 (flags set in src/CMakeLists.txt), built twice:
// "avx512" (AVX512-BW vpmaddubsw) and, with VNNI enabled for the rest of this file only,
// "avx512vnni" (vpdpbusd). quant_dot.cpp runs the second only where CPUID reports AVX512_VNNI.
#define LA_ISA avx512
#include "la/kernels/isa/quant_dot_impl.inc"
#undef LA_ISA

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512vnni"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512vnni")
#endif
#define LA_ISA avx512vnni
#define LA_QD_VNNI 1
#include "la/kernels/isa/quant_dot_impl.inc"
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
