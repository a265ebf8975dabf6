// NF4 tile dequantisation for the training GEMMs: the trainer expands a band of rows of a frozen
// NF4 weight into a small f32 tile and multiplies it with OpenBLAS, so the base is never expanded
// whole (a tile of 64 rows of a 1536-wide matrix is 384 KiB).
#include "edge_train.h"

void et_nf4_decode_absmax(const uint8_t *q8, const float *nested, const float *map, float offset,
                          size_t nblocks, size_t nested_bs, float *out) {
    for (size_t i = 0; i < nblocks; i++) out[i] = map[q8[i]] * nested[i / nested_bs] + offset;
}

void et_nf4_dequant_rows(const uint8_t *packed, const float *absmax, const float *code, size_t cols,
                         size_t blocksize, size_t row0, size_t nrows, float *out) {
    size_t k0 = row0 * cols, n = nrows * cols;
    size_t k = k0, end = k0 + n;
    float *o = out;
    // Walk block by block; within a block the scale is constant. Element k's byte is k/2.
    while (k < end) {
        size_t block = k / blocksize;
        size_t bend = (block + 1) * blocksize;
        if (bend > end) bend = end;
        float a = absmax[block];
        if ((k & 1) && k < bend) {  // odd start: low nibble of a byte
            *o++ = code[packed[k >> 1] & 0x0F] * a;
            k++;
        }
        for (; k + 1 < bend; k += 2) {
            uint8_t b = packed[k >> 1];
            o[0] = code[b >> 4] * a;
            o[1] = code[b & 0x0F] * a;
            o += 2;
        }
        if (k < bend) {  // one element left, even index: high nibble
            *o++ = code[packed[k >> 1] >> 4] * a;
            k++;
        }
    }
}
