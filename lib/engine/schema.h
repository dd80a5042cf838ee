/* SPDX-License-Identifier: MIT */
/*
 * The QAPI schema both engines' buses serve and enforce: schema.json,
 * compiled in by the Makefile as this NUL-terminated string. See
 * mig_bus_open() for its form and mig-protocol(7) for what it lists.
 */
#ifndef MIG_SCHEMA_H
#define MIG_SCHEMA_H

extern const char mig_schema_json[];

#endif
