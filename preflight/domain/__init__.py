"""Pure domain logic: no I/O, no clock, no database. Functions in, frozen dataclasses out."""
