#ifndef CESB_HIREDIS_SHIM_H
#define CESB_HIREDIS_SHIM_H
#include <hiredis/hiredis.h>

// Version macros are not imported as Swift constants; expose them as functions.
static inline int cesb_hiredis_major(void) { return HIREDIS_MAJOR; }
static inline int cesb_hiredis_minor(void) { return HIREDIS_MINOR; }
static inline int cesb_hiredis_patch(void) { return HIREDIS_PATCH; }
#endif
