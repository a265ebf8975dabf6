// Debian ships cblas.h under an OpenBLAS-variant directory (e.g. .../openblas-pthread/), not in
// /usr/include; pkg-config `openblas` supplies that -I, so include it by its bare name.
#include <cblas.h>
