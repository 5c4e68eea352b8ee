#ifndef MYRIXEN_CHWLOC_SHIM_H
#define MYRIXEN_CHWLOC_SHIM_H
#include <hwloc.h>
#endif
