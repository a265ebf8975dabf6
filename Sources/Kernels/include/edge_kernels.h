// edge-runtime kernels: the public C interface of the Kernels target.
#ifndef EDGE_KERNELS_H
#define EDGE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// ---- NF4 format tables (bitsandbytes 0.50.2, see NF4.md) -------------------------------------
// Stored as bit patterns so the values are exact; reinterpret as float.
extern const uint32_t ek_nf4_code_bits[16];
extern const uint32_t ek_nf4_threshold_bits[15];
extern const uint32_t ek_dynamic_map_bits[256];

#ifdef __cplusplus
}
#endif
#endif
