"""conversions stage."""
